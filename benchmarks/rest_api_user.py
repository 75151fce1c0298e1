"""dlt's generic ``rest_api`` source configured for the Micrometrics API as a user would.

What a dlt user writes from dlt's documentation and the API notes, with nothing of the
connector: a custom ``requests`` auth that signs each request (APIAuth, HMAC-SHA1), a
``HeaderCursorPaginator`` on ``Next-Cursor``, and an incremental cursor on ``updated_at`` sent
as ``start_at`` (from 1970: without it the API serves only the last month). Responses are a
dependent resource of the survey list. Loaded into DuckDB with dlt's defaults (merge on id).

One user workaround is needed, else the sync never ends: the API closes a cursor chain with
an *empty* ``Next-Cursor:`` header, which the stock paginator takes for a next page (it tests
``is not None``) and which the API reads as "first page" again. ``--stock-paginator`` runs
without the workaround (see ``benchmarks.scale``, which shows it looping).

Run by ``benchmarks.scale`` as a subprocess (configuration from the environment)::

    BENCH_URL=http://127.0.0.1:PORT BENCH_KEY=k BENCH_SECRET=s \\
        python -m benchmarks.rest_api_user [--stock-paginator]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import dlt
from dlt.common.configuration import configspec
from dlt.common.typing import TSecretStrValue
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.paginators import HeaderCursorPaginator
from dlt.sources.rest_api import rest_api_source


@configspec
class MicrometricsAuth(AuthConfigBase):
    """``Authorization: APIAuth key:Base64(HMAC-SHA1(secret, METHOD,type,md5,uri,Date))``."""

    api_key: str = None
    api_secret: TSecretStrValue = None

    def __call__(self, request: Any) -> Any:
        date = formatdate(usegmt=True)
        parts = urlsplit(request.url)
        uri = f"{parts.path}?{parts.query}" if parts.query else parts.path
        canonical = ",".join([request.method.upper(), request.headers.get("Content-Type", ""),
                              "", uri, date])
        digest = hmac.new(self.api_secret.encode(), canonical.encode(), hashlib.sha1).digest()
        request.headers["Date"] = date
        request.headers["Authorization"] = (
            f"APIAuth {self.api_key}:{base64.b64encode(digest).decode()}")
        return request


class EmptyCursorEndsPaginator(HeaderCursorPaginator):
    """The user's fix for the empty ``Next-Cursor:`` on the last page."""

    def update_state(self, response: Any, data: Any = None) -> None:
        self._next_reference = response.headers.get(self.cursor_key) or None


def incremental_start() -> dict[str, Any]:
    return {"type": "incremental", "cursor_path": "updated_at",
            "initial_value": "1970-01-01T00:00:00Z"}


def source(url: str, key: str, secret: str, stock_paginator: bool = False) -> Any:
    paginator_class = HeaderCursorPaginator if stock_paginator else EmptyCursorEndsPaginator
    return rest_api_source({
        "client": {
            "base_url": url.rstrip("/") + "/api/experience/",
            "auth": MicrometricsAuth(api_key=key, api_secret=secret),
            "paginator": paginator_class(cursor_key="Next-Cursor", cursor_param="cursor"),
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {"name": "devices",
             "endpoint": {"path": "devices", "params": {"start_at": incremental_start()}}},
            {"name": "surveys",
             "endpoint": {"path": "surveys", "params": {"start_at": incremental_start()}}},
            {"name": "survey_responses",
             "endpoint": {"path": "surveys/{resources.surveys.id}/responses",
                          "params": {"start_at": incremental_start()}}},
        ],
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stock-paginator", action="store_true",
                        help="HeaderCursorPaginator as shipped (loops on the empty cursor)")
    args = parser.parse_args()
    pipeline = dlt.pipeline(
        pipeline_name="micrometrics_rest_api",
        destination=dlt.destinations.duckdb(os.environ["BENCH_DUCKDB"]),
        dataset_name="micrometrics",
    )
    info = pipeline.run(source(os.environ["BENCH_URL"], os.environ["BENCH_KEY"],
                               os.environ["BENCH_SECRET"], args.stock_paginator))
    info.raise_on_failed_jobs()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
