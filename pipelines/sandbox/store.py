"""The sandbox's in-memory data: records per kind, their change times, and mutations.

Records are never modified in place: a mutation stores a new dict. A page being serialized
outside the lock therefore never sees a half-updated record.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from . import data

KINDS = ("devices", "surveys", "survey_responses")


class Store:
    """Thread-safe store of devices, surveys and survey responses.

    Args:
        seed: Seed of the initial data and of the mutations' RNG.
        devices: Number of generated devices.
        surveys: Number of generated surveys.
        responses: Number of generated survey responses.
        clock: Zero-argument callable returning UNIX time; the data is anchored on its value
            at construction (truncated to the minute) and mutations are stamped with it.
    """

    def __init__(
        self,
        seed: int = 1,
        devices: int = 40,
        surveys: int = 5,
        responses: int = 6000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.time
        self._lock = threading.RLock()
        # A separate stream so mutations do not depend on how much data was generated.
        self._rng = random.Random(f"{seed}:mutations")
        anchor_ms = int(self._clock() // 60) * 60_000
        self._records: dict[str, dict[Any, dict]] = {k: {} for k in KINDS}
        self._updated: dict[str, dict[Any, int]] = {k: {} for k in KINDS}
        rows = data.generate(seed, anchor_ms, devices, surveys, responses)
        for kind in KINDS:
            for updated_ms, record in rows[kind]:
                self._put(kind, record, updated_ms)

    # -- reading -----------------------------------------------------------------------------

    def get(self, kind: str, record_id: Any) -> dict | None:
        """The stored record (do not modify it), or None."""
        with self._lock:
            return self._records[kind].get(record_id)

    def rows(self, kind: str, survey_id: int | None = None) -> list[tuple[int, dict]]:
        """``(updated_at_ms, record)`` for every record of ``kind``, optionally of one survey."""
        with self._lock:
            return [
                (self._updated[kind][rid], rec)
                for rid, rec in self._records[kind].items()
                if survey_id is None or rec.get("survey_id") == survey_id
            ]

    def truth(self) -> dict[str, list[dict]]:
        """Deep copies of every record as the API serves it now, sorted by id."""
        with self._lock:
            return {
                kind: [copy.deepcopy(r) for _, r in sorted(self._records[kind].items())]
                for kind in KINDS
            }

    # -- mutations -----------------------------------------------------------------------------

    def add_responses(self, count: int, survey_id: int | None = None) -> list[int]:
        """Creates ``count`` responses stamped now, in ``survey_id`` or random surveys."""
        return self._new_responses(count, survey_id, delay_ms=0)

    def add_late_responses(self, count: int, delay_seconds: float = 1800) -> list[int]:
        """Creates responses that arrive now but carry ``updated_at = now - delay`` (uploaded late
        by an offline device), so they can fall behind an incremental cursor."""
        return self._new_responses(count, None, delay_ms=int(delay_seconds * 1000))

    def update_responses(self, count: int) -> list[int]:
        """Changes answers/comment of ``count`` distinct existing responses; updated_at = now."""
        with self._lock:
            now = self._now_ms()
            ids = self._sample("survey_responses", count)
            for rid in ids:
                record = copy.deepcopy(self._records["survey_responses"][rid])
                survey = self._records["surveys"][record["survey_id"]]
                record["answers"] = data.make_answers(self._rng, survey["questions"])
                data.maybe_comment(self._rng, record)
                record["updated_at"] = data.format_ms(now)
                self._put("survey_responses", record, now)
            return ids

    def update_devices(self, count: int) -> list[str]:
        """Renames / toggles status of ``count`` distinct devices; updated_at = now."""
        with self._lock:
            now = self._now_ms()
            ids = self._sample("devices", count)
            for did in ids:
                record = dict(self._records["devices"][did])
                record["name"] = self._rng.choice(data.DEVICE_NAMES)
                record["status"] = "inactive" if record["status"] == "active" else "active"
                record["updated_at"] = data.format_ms(now)
                self._put("devices", record, now)
            return ids

    def add_devices(self, count: int) -> list[str]:
        """Creates ``count`` devices with created_at = updated_at = now."""
        with self._lock:
            now = self._now_ms()
            ids = []
            for _ in range(count):
                record = data.make_device(self._rng, now, now)
                while record["id"] in self._records["devices"]:
                    record["id"] = data.device_id(self._rng)
                self._put("devices", record, now)
                ids.append(record["id"])
            return ids

    def add_survey(self) -> int:
        """Creates a survey (with questions, no responses yet) stamped now; returns its id."""
        with self._lock:
            now = self._now_ms()
            surveys = self._records["surveys"]
            survey_id = max(surveys, default=236) + 1
            first_q = 1 + max(
                (q["id"] for s in surveys.values() for q in s["questions"]), default=1000
            )
            record = {
                "id": survey_id,
                "name": self._rng.choice(data.SURVEY_NAMES),
                "questions": data.make_questions(self._rng, first_q),
                "created_at": data.format_ms(now),
                "updated_at": data.format_ms(now),
            }
            self._put("surveys", record, now)
            return survey_id

    def create_response(self, survey_id: int, body: dict[str, Any]) -> dict:
        """Creates a response from a POST body (``id``/``survey_id``/timestamps are assigned).

        Raises:
            KeyError: The survey does not exist.
            ValueError: The body has a wrong shape.
        """
        answers, comment = _validated(body)
        with self._lock:
            if survey_id not in self._records["surveys"]:
                raise KeyError(survey_id)
            now = self._now_ms()
            record = {
                "id": self._next_response_id(),
                "survey_id": survey_id,
                "device_id": body.get("device_id"),
                "created_at": data.format_ms(now),
                "updated_at": data.format_ms(now),
                "answers": answers if answers is not None else [],
            }
            if comment is not _MISSING:
                record["comment"] = comment
            self._put("survey_responses", record, now)
            return record

    def update_response(self, survey_id: int, response_id: int, body: dict[str, Any]) -> dict:
        """Replaces ``answers`` and/or ``comment`` of a response from a PUT body; updated_at = now.

        Raises:
            KeyError: No such response in that survey.
            ValueError: The body has a wrong shape.
        """
        answers, comment = _validated(body)
        with self._lock:
            current = self._records["survey_responses"].get(response_id)
            if current is None or current["survey_id"] != survey_id:
                raise KeyError(response_id)
            now = self._now_ms()
            record = copy.deepcopy(current)
            if answers is not None:
                record["answers"] = answers
            if comment is not _MISSING:
                record["comment"] = comment
            record["updated_at"] = data.format_ms(now)
            self._put("survey_responses", record, now)
            return record

    # -- internals -----------------------------------------------------------------------------

    def _put(self, kind: str, record: dict, updated_ms: int) -> None:
        self._records[kind][record["id"]] = record
        self._updated[kind][record["id"]] = updated_ms

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _sample(self, kind: str, count: int) -> list:
        ids = sorted(self._records[kind])  # sorted: deterministic regardless of dict history
        return self._rng.sample(ids, min(count, len(ids)))

    def _next_response_id(self) -> int:
        return max(self._records["survey_responses"], default=10_000) + 1

    def _new_responses(self, count: int, survey_id: int | None, delay_ms: int) -> list[int]:
        with self._lock:
            at = self._now_ms() - delay_ms
            surveys = sorted(self._records["surveys"])
            devices = sorted(self._records["devices"])
            if survey_id is not None and survey_id not in self._records["surveys"]:
                raise KeyError(survey_id)
            if not surveys or not devices:
                raise ValueError("responses need at least one survey and one device")
            ids = []
            for _ in range(count):
                sid = survey_id if survey_id is not None else self._rng.choice(surveys)
                record = data.make_response(
                    self._rng,
                    self._next_response_id(),
                    self._records["surveys"][sid],
                    self._rng.choice(devices),
                    at,
                    at,
                )
                self._put("survey_responses", record, at)
                ids.append(record["id"])
            return ids


_MISSING = object()


def _validated(body: Any) -> tuple[list | None, Any]:
    """Checks a POST/PUT body; returns (answers or None, comment or _MISSING)."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    answers = body.get("answers")
    if answers is not None and not (
        isinstance(answers, list)
        and all(isinstance(a, dict) and "question_id" in a for a in answers)
    ):
        raise ValueError("answers must be a list of {question_id, value} objects")
    return answers, body.get("comment", _MISSING)
