"""``make report``: one self-contained HTML page of charts over the marts.

:func:`report_data` reads every number the page shows (a :class:`ReportData`), and
:func:`render_html` / :func:`write_report` draw it with plotly, plotly.js embedded inline, so
the file opens anywhere without a server or network.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import dlt

from .data import (
    DayCount,
    Freshness,
    ReportData,
    ReportError,
    SilentDevice,
    SurveyWeek,
    report_data,
)
from .render import figures, render_html, write_report

__all__ = [
    "DayCount",
    "Freshness",
    "ReportData",
    "ReportError",
    "SilentDevice",
    "SurveyWeek",
    "figures",
    "make_report",
    "render_html",
    "report_data",
    "write_report",
]


def make_report(pipeline: dlt.Pipeline, output: Path | str, now: datetime | None = None,
                status: dict[str, Any] | None = None) -> Path:
    """Reads the marts of ``pipeline``'s dataset and writes the report to ``output``
    (``now`` and ``status``: see :func:`report_data`).

    Returns:
        The absolute path written.

    Raises:
        ReportError: The marts are not built there, or the destination refused a query.
    """
    return write_report(report_data(pipeline, now=now, status=status), output)
