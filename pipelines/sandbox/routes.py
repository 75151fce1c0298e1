"""The Experience API itself: routing, index pages with windows and cursors, writes.

Transport concerns (auth, rate limit, faults, sockets) live in ``server.py``; this module
maps an authenticated request to a :class:`Reply`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import window
from .cursor import CursorCodec, CursorError
from .paging import FIRST, page_after, sort_key
from .store import Store

PREFIX = "/api/experience"
# (pattern under PREFIX, route name, endpoint name for stats, allowed methods)
_ROUTES: list[tuple[re.Pattern[str], str, str, tuple[str, ...]]] = [
    (re.compile(r"^/devices$"), "devices", "devices", ("GET",)),
    (re.compile(r"^/devices/([^/]+)$"), "device", "devices", ("GET",)),
    (re.compile(r"^/surveys$"), "surveys", "surveys", ("GET",)),
    (re.compile(r"^/surveys/(\d+)$"), "survey", "surveys", ("GET",)),
    (re.compile(r"^/surveys/(\d+)/responses$"), "responses", "survey_responses", ("GET", "POST")),
    (re.compile(r"^/surveys/(\d+)/responses/(\d+)$"), "response", "survey_responses", ("PUT",)),
]


@dataclass
class Reply:
    """What to send back.

    Attributes:
        status: HTTP status.
        body: JSON-serializable body.
        headers: Extra headers (e.g. ``Next-Cursor``).
        page_records: Number of records for a 200 index page, else None.
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    page_records: int | None = None


def error(status: int, message: str, **headers: str) -> Reply:
    """A JSON ``{"error": message}`` reply."""
    return Reply(status, {"error": message}, dict(headers))


def endpoint_of(raw_uri: str) -> str:
    """Resource name of a request path for stats (``other`` when no route matches)."""
    path = urlsplit(raw_uri).path
    if path.startswith(PREFIX):
        for pattern, _, name, _ in _ROUTES:
            if pattern.match(path[len(PREFIX) :]):
                return name
    return "other"


class Api:
    """Serves authenticated API requests from a :class:`Store`.

    Args:
        store: The data.
        codec: Cursor encoder/decoder.
        seed: Seed of the shuffled order.
        page_size: Records per index page.
        order: ``shuffled``, ``asc`` or ``desc``.
        boundary: ``closed``, ``open``, ``left`` or ``right`` (see :func:`window.contains`).
        last_cursor: ``empty`` (send ``Next-Cursor:`` empty on the last page) or ``absent``.
        clock: UNIX time source for the default window.
    """

    def __init__(
        self,
        store: Store,
        codec: CursorCodec,
        *,
        seed: int,
        page_size: int,
        order: str,
        boundary: str,
        last_cursor: str,
        clock: Callable[[], float],
    ) -> None:
        self.store, self.codec, self.seed = store, codec, seed
        self.page_size, self.order, self.boundary = page_size, order, boundary
        self.last_cursor, self.clock = last_cursor, clock
        # (kind, survey, start, end) -> (store version, sorted keys, records): pages of one
        # result set bisect a list sorted once, until the store changes.
        self._sorted: dict[tuple, tuple[int, list, list]] = {}

    def handle(self, method: str, raw_uri: str, body: bytes) -> Reply:
        """Dispatches one request (already authenticated and admitted)."""
        parts = urlsplit(raw_uri)
        path = parts.path
        sub = path[len(PREFIX) :] if path.startswith(PREFIX + "/") else None
        for pattern, route, _, methods in _ROUTES:
            match = pattern.match(sub) if sub is not None else None
            if not match:
                continue
            if method not in methods:
                return error(405, f"method {method} not allowed", Allow=", ".join(methods))
            args = [unquote(g) for g in match.groups()]
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            return self._dispatch(route, method, path, args, query, body)
        return error(404, f"no such resource: {path}")

    def _dispatch(
        self,
        route: str,
        method: str,
        path: str,
        args: list[str],
        query: dict[str, str],
        body: bytes,
    ) -> Reply:
        if route in ("devices", "surveys"):
            return self._index(route, path, query)
        if route == "device":
            return self._one("devices", args[0])
        survey_id = int(args[0])
        if self.store.get("surveys", survey_id) is None:
            return error(404, f"survey {survey_id} not found")
        if route == "survey":
            return self._one("surveys", survey_id)
        if method == "GET":
            return self._index("survey_responses", path, query, survey_id)
        try:
            payload = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return error(400, f"body is not valid JSON: {exc}")
        try:
            if method == "POST":
                return Reply(201, self.store.create_response(survey_id, payload))
            return Reply(200, self.store.update_response(survey_id, int(args[1]), payload))
        except KeyError:
            return error(404, f"response {args[-1]} not found in survey {survey_id}")
        except ValueError as exc:
            return error(400, str(exc))

    def _one(self, kind: str, record_id: Any) -> Reply:
        # Single-record GETs ignore start_at/end_at: the window applies to index pages.
        record = self.store.get(kind, record_id)
        if record is None:
            return error(404, f"{kind[:-1]} {record_id} not found")
        return Reply(200, record)

    def _index(
        self, kind: str, path: str, query: dict[str, str], survey_id: int | None = None
    ) -> Reply:
        start_raw, end_raw = query.get("start_at"), query.get("end_at")
        try:
            start, end = window.resolve(start_raw, end_raw, self.clock())
        except window.BoundError as exc:
            return error(400, str(exc))
        binding = self.codec.binding(path, start_raw, end_raw)
        after = None
        if query.get("cursor"):  # an empty cursor= means "first page", like no cursor
            try:
                after = self.codec.decode(query["cursor"], binding)
            except CursorError as exc:
                return error(400, str(exc))
        keys, records_sorted = self._result_set(kind, survey_id, start, end)
        try:
            records, last_key = page_after(keys, records_sorted, after, self.page_size)
        except TypeError:  # a signed key of another shape (cannot happen unless secret leaks)
            return error(400, "invalid cursor: bad key")
        headers = {}
        if last_key is not None:
            headers["Next-Cursor"] = self.codec.encode(last_key, binding)
        elif self.last_cursor == "empty":
            headers["Next-Cursor"] = ""  # present but empty: "no more pages"
        return Reply(200, records, headers, page_records=len(records))


    def _result_set(
        self, kind: str, survey_id: int | None, start: int, end: int
    ) -> tuple[list, list]:
        """Sort keys and records of one window, sorted by key; cached until the store changes."""
        cache_key = (kind, survey_id, start, end)
        cached = self._sorted.get(cache_key)
        if cached and cached[0] == self.store.version:
            return cached[1], cached[2]
        version, rows = self.store.versioned_rows(kind, survey_id)
        keyed = [
            (sort_key(self.order, self.seed, rec["id"], ms), rec)
            for ms, rec in rows
            if window.contains(self.boundary, start, end, ms * 1000)
        ]
        # Malformed records get a synthetic id in the sort key (unique, same type as the
        # kind's ids). Without a parseable updated_at they are in every window, keyed before
        # everything else: on the first page, exactly once per cursor chain.
        for seq, us, rec in self.store.malformed_rows(kind, survey_id):
            synthetic: Any = f"~malformed-{seq:08d}" if kind == "devices" else -1 - seq
            if us is None:
                keyed.append(((FIRST, synthetic), rec))
            elif window.contains(self.boundary, start, end, us):
                keyed.append((sort_key(self.order, self.seed, synthetic, us // 1000), rec))
        keyed.sort(key=lambda kr: kr[0])
        if len(self._sorted) > 256:  # windows move with every sync: keep the cache small
            self._sorted.clear()
        self._sorted[cache_key] = (version, [k for k, _ in keyed], [r for _, r in keyed])
        return self._sorted[cache_key][1], self._sorted[cache_key][2]
