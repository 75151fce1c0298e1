"""The floor of a sync at an unlimited rate: a bare signed client that only fetches the pages.

One ``requests`` session signs every request (the connector's ``APIAuth``) and reads the
device list, the survey list and each survey's responses over the whole history, one window
each (``start_at`` 1970, ``end_at`` tomorrow), following ``Next-Cursor`` to its end and
decoding each page's JSON, then drops the data: no dlt, no destination. Its time is what
HTTP and JSON alone cost for the pages needed. Run by ``benchmarks.scale`` as a subprocess::

    BENCH_URL=http://127.0.0.1:PORT BENCH_KEY=k BENCH_SECRET=s python -m benchmarks.bare_fetch
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import requests

from pipelines.micrometrics.auth import APIAuth

START = "1970-01-01T00:00:00.000Z"


def read_all(session: requests.Session, url: str, end: str, keep: bool = False) -> list[dict]:
    """Reads every page of one stream; returns the records only when ``keep`` (else a sync
    that kept nothing would be charged for holding a whole stream in memory)."""
    records: list[dict] = []
    cursor = ""
    while True:
        params = {"start_at": START, "end_at": end}
        if cursor:
            params["cursor"] = cursor
        response = session.get(url, params=params, timeout=60)
        response.raise_for_status()
        page = response.json()
        if keep:
            records += page
        cursor = response.headers.get("Next-Cursor") or ""
        if not cursor:
            return records


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    base = os.environ["BENCH_URL"].rstrip("/") + "/api/experience"
    session = requests.Session()
    session.auth = APIAuth(os.environ["BENCH_KEY"], os.environ["BENCH_SECRET"])
    end = (datetime.fromtimestamp(time.time(), UTC) + timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")
    read_all(session, f"{base}/devices", end)
    for survey in read_all(session, f"{base}/surveys", end, keep=True):
        read_all(session, f"{base}/surveys/{survey['id']}/responses", end)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
