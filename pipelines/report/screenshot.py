"""``python -m pipelines.report.screenshot report.html docs/report.png``: a PNG of a report,
drawn by headless chromium with the network cut off (see :mod:`.browser`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .browser import BrowserMissing, offline_page, open_report
from .render import CHARTS


def screenshot(report: Path | str, png: Path | str, width: int = 1280) -> Path:
    """Renders ``report`` and saves the whole page as ``png``.

    Raises:
        BrowserMissing: No chromium or Playwright.
        RuntimeError: The page fetched something, logged an error or drew too few charts.
    """
    target = Path(png)
    target.parent.mkdir(parents=True, exist_ok=True)
    with offline_page(width=width) as (page, log):
        drawn = open_report(page, report, len(CHARTS))
        problems = log.errors + log.console_errors + [f"requested {url}" for url in log.blocked]
        if problems or drawn != len(CHARTS):
            raise RuntimeError(f"{report}: {drawn}/{len(CHARTS)} charts drawn; "
                               + "; ".join(problems))
        # Hovering nothing: move the mouse off the charts so no tooltip is captured.
        page.mouse.move(0, 0)
        page.screenshot(path=str(target), full_page=True)
    return target.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.report.screenshot",
                                     description=__doc__)
    parser.add_argument("report", help="the report's HTML file")
    parser.add_argument("png", help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="page width in pixels")
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.report, args.png, args.width)
    except (BrowserMissing, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"screenshot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
