"""The sandbox's in-memory data: records per kind, their change times, and mutations.

Records are never modified in place: a mutation stores a new dict. A page being serialized
outside the lock therefore never sees a half-updated record.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from . import data, window

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
        silent_devices: int = 0,
    ) -> None:
        self._clock = clock or time.time
        self._lock = threading.RLock()
        # A separate stream so mutations do not depend on how much data was generated.
        self._rng = random.Random(f"{seed}:mutations")
        anchor_ms = int(self._clock() // 60) * 60_000
        self._records: dict[str, dict[Any, dict]] = {k: {} for k in KINDS}
        self._updated: dict[str, dict[Any, int]] = {k: {} for k in KINDS}
        # Raw records served as-is (see add_malformed): (seq, updated_us or None, survey_id, rec)
        self._malformed: dict[str, list[tuple[int, int | None, Any, dict]]] = {
            k: [] for k in KINDS
        }
        self._malformed_seq = 0
        # Bumped by every change, so the API can cache sorted result sets between changes.
        self.version = 0
        # Surveys removed with remove_survey, with their responses, for restore_survey.
        self._removed: dict[Any, list[tuple[str, int, dict]]] = {}
        # Records erased with erase_records, for restore_records: (kind, id) -> (updated, record).
        self._erased: dict[tuple[str, Any], tuple[int, dict]] = {}
        # The highest id ever stored per kind (and of questions): new ids go above it, so an id
        # erased, removed or dropped is never handed out again, as the vendor's never would.
        self._issued: dict[str, int] = {"survey_responses": 10_000, "surveys": 236,
                                        "questions": 1000}
        rows = data.generate(seed, anchor_ms, devices, surveys, responses, silent_devices)
        self.silent_device_ids = data.silent_device_ids(rows["devices"], silent_devices)
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
        return self.versioned_rows(kind, survey_id)[1]

    def versioned_rows(
        self, kind: str, survey_id: int | None = None
    ) -> tuple[int, list[tuple[int, dict]]]:
        """``rows`` together with the store's version they were read at."""
        with self._lock:
            return self.version, [
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

    def malformed_rows(
        self, kind: str, survey_id: int | None = None
    ) -> list[tuple[int, int | None, dict]]:
        """``(seq, updated_at_us or None, record)`` for every malformed record of ``kind``."""
        with self._lock:
            return [
                (seq, us, rec)
                for seq, us, sid, rec in self._malformed[kind]
                if survey_id is None or sid == survey_id
            ]

    def malformed(self) -> dict[str, list[dict]]:
        """Deep copies of the malformed records, by kind, in the order they were added."""
        with self._lock:
            return {
                kind: [copy.deepcopy(rec) for _, _, _, rec in self._malformed[kind]]
                for kind in KINDS
            }

    # -- mutations -----------------------------------------------------------------------------

    def patch_records(
        self, kind: str, ids: list, fields: dict[str, Any], bump: bool = True
    ) -> list:
        """Sets (or overwrites) top-level ``fields`` on existing records, for schema tests.

        Values may be any JSON value (nested objects, lists, long strings, another type than
        before). With ``bump``, ``updated_at`` becomes now; an explicit ``updated_at`` in
        ``fields`` wins over ``bump`` and must be an ISO 8601 timestamp with an offset (it
        moves the record in windows). ``id`` cannot be patched.

        Raises:
            KeyError: Unknown kind or record id.
            ValueError: ``fields`` is not a JSON object, patches ``id``, or has a bad
                ``updated_at``.
        """
        if kind not in KINDS:
            raise KeyError(kind)
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise ValueError("fields must be an object with string keys")
        if "id" in fields:
            raise ValueError("id cannot be patched")
        fields = _json_copy(fields)
        explicit_ms = None
        if "updated_at" in fields:
            explicit_us = _parse_updated(fields["updated_at"])
            if explicit_us is None:
                raise ValueError(
                    "updated_at must be ISO 8601 with an offset; use add_malformed for bad ones"
                )
            explicit_ms = explicit_us // 1000
        with self._lock:
            missing = [i for i in ids if i not in self._records[kind]]
            if missing:
                raise KeyError(f"no {kind} with ids {missing!r}")
            now = self._now_ms()
            for rid in ids:
                record = copy.deepcopy(self._records[kind][rid])
                record.update(copy.deepcopy(fields))
                updated_ms = self._updated[kind][rid]
                if explicit_ms is not None:
                    updated_ms = explicit_ms
                elif bump:
                    updated_ms = now
                    record["updated_at"] = data.format_ms(now)
                self._put(kind, record, updated_ms)
            return list(ids)

    def add_malformed(self, kind: str, record: dict, survey_id: int | None = None) -> None:
        """Stores a raw record served as-is by the index route of ``kind`` (never by id).

        It may lack ``id`` and/or ``updated_at``, or carry an unparseable ``updated_at``.
        ``truth()`` excludes it; :meth:`malformed` lists it. Survey responses go under
        ``survey_id`` (default: the first survey).

        Raises:
            KeyError: Unknown kind or survey.
            ValueError: ``record`` is not a JSON object, or ``survey_id`` is given for
                another kind, or there is no survey.
        """
        if kind not in KINDS:
            raise KeyError(kind)
        if not isinstance(record, dict):
            raise ValueError("record must be a JSON object")
        if survey_id is not None and kind != "survey_responses":
            raise ValueError("survey_id only applies to survey_responses")
        record = _json_copy(record, allow_nan=True)  # served as NaN/Infinity: strict parsers refuse
        with self._lock:
            if kind == "survey_responses":
                if survey_id is None:
                    if not self._records["surveys"]:
                        raise ValueError("malformed survey responses need a survey")
                    survey_id = min(self._records["surveys"])
                elif survey_id not in self._records["surveys"]:
                    raise KeyError(survey_id)
            seq = self._malformed_seq
            self._malformed_seq += 1
            self.version += 1
            us = _parse_updated(record.get("updated_at"))
            self._malformed[kind].append((seq, us, survey_id, record))

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
                questions = self._questions(record.get("survey_id"))
                record["answers"] = data.make_answers(self._rng, questions)
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
                while (record["id"] in self._records["devices"]
                       or ("devices", record["id"]) in self._erased):
                    record["id"] = data.device_id(self._rng)
                self._put("devices", record, now)
                ids.append(record["id"])
            return ids

    def add_survey(self, survey_id: int | None = None) -> int:
        """Creates a survey (with questions, no responses yet) stamped now; returns its id: a new
        one, or ``survey_id`` given again (the vendor never reuses one, but a restore from its
        backup could). Raises ValueError when ``survey_id`` is a live survey's."""
        with self._lock:
            now = self._now_ms()
            if survey_id in self._records["surveys"]:
                raise ValueError(f"survey {survey_id} exists")
            survey_id = self._issued["surveys"] + 1 if survey_id is None else survey_id
            first_q = self._issued["questions"] + 1
            record = {
                "id": survey_id,
                "name": self._rng.choice(data.SURVEY_NAMES),
                "questions": data.make_questions(self._rng, first_q),
                "created_at": data.format_ms(now),
                "updated_at": data.format_ms(now),
            }
            self._put("surveys", record, now)
            return survey_id

    def edit_questions(
        self, survey_id: int, drop: list[int] | None = None, add: list[str] | None = None
    ) -> list[int]:
        """A survey owner's edit: drops the questions whose ids are in ``drop`` and appends one
        new question per type in ``add`` (``nps``, ``rating``, ``text``, ``choice``), each with
        a fresh id that no survey ever had; the survey's ``updated_at`` = now. Re-creating a
        question is dropping it and adding one. Responses created afterwards answer the new
        question list. Returns the new question ids, in the order of ``add``.

        Raises:
            KeyError: Unknown survey, or an id in ``drop`` that it does not list.
            ValueError: An unknown question type in ``add``.
        """
        drop, add = list(drop or []), list(add or [])
        unknown = [kind for kind in add if kind not in data.QUESTION_TEXTS]
        if unknown:
            raise ValueError(f"unknown question types {unknown!r}; one of "
                             f"{', '.join(data.QUESTION_TEXTS)}")
        with self._lock:
            survey = self._records["surveys"].get(survey_id)
            if survey is None:
                raise KeyError(survey_id)
            questions = survey.get("questions")
            questions = questions if isinstance(questions, list) else []
            listed = {q.get("id") for q in questions if isinstance(q, dict)}
            missing = [qid for qid in drop if qid not in listed]
            if missing:
                raise KeyError(f"survey {survey_id} has no questions {missing!r}")
            high = self._issued["questions"]
            new_ids = list(range(high + 1, high + 1 + len(add)))
            kept = [q for q in questions if not (isinstance(q, dict) and q.get("id") in drop)]
            kept += [{"id": qid, "type": kind, "text": data.QUESTION_TEXTS[kind]}
                     for qid, kind in zip(new_ids, add, strict=True)]
            now = self._now_ms()
            record = {**copy.deepcopy(survey), "questions": kept,
                      "updated_at": data.format_ms(now)}
            self._put("surveys", record, now)
            return new_ids

    def remove_survey(self, survey_id: int) -> list[int]:
        """Deletes a survey and its responses (as if removed in the vendor's app); returns the
        ids of the responses that went with it. Raises KeyError for an unknown survey.
        :meth:`restore_survey` brings both back."""
        with self._lock:
            removed = [("surveys", self._updated["surveys"][survey_id],
                        self._records["surveys"][survey_id])]
            gone = [rid for rid, record in self._records["survey_responses"].items()
                    if record.get("survey_id") == survey_id]
            removed += [("survey_responses", self._updated["survey_responses"][rid],
                         self._records["survey_responses"][rid]) for rid in gone]
            self._delete("surveys", [survey_id])
            self._delete("survey_responses", gone)
            self._removed[survey_id] = removed
            return gone

    def restore_survey(self, survey_id: int) -> list[int]:
        """Brings back a survey removed by :meth:`remove_survey`, with its responses, exactly as
        they were (same ``updated_at``: an undelete in the vendor's app changes nothing else).
        Returns the response ids. Raises KeyError if the survey was not removed, ValueError if
        its id was given to a survey since (``add_survey(survey_id)``)."""
        with self._lock:
            if survey_id in self._records["surveys"]:
                raise ValueError(f"survey {survey_id} exists")
            removed = self._removed.pop(survey_id)
            for kind, updated_ms, record in removed:
                self._put(kind, record, updated_ms)
            return [record["id"] for kind, _, record in removed if kind == "survey_responses"]

    def erase_records(self, kind: str, ids: list) -> list:
        """Deletes records for good (a respondent's erasure request, a decommissioned device):
        nothing in the API says they existed. Unknown ids: KeyError, nothing erased."""
        if kind not in ("devices", "survey_responses"):
            raise KeyError(f"erase_records takes devices or survey_responses, not {kind!r}")
        with self._lock:
            missing = [i for i in ids if i not in self._records[kind]]
            if missing:
                raise KeyError(f"no {kind} with ids {missing!r}")
            for rid in ids:
                self._erased[(kind, rid)] = (self._updated[kind][rid], self._records[kind][rid])
            self._delete(kind, ids)
            return list(ids)

    def restore_records(self, kind: str, ids: list) -> list:
        """Brings back records erased by :meth:`erase_records` exactly as they were (same
        ``updated_at``: a vendor's undelete, or a listing that once missed them), which no
        incremental read reaches. Ids not erased: KeyError; a response whose survey is removed
        now (the API could not serve it, and ``truth()`` would list it): ValueError; nothing
        restored either way."""
        with self._lock:
            missing = [i for i in ids if (kind, i) not in self._erased]
            if missing:
                raise KeyError(f"no {kind} erased with ids {missing!r}")
            orphans = [i for i in ids if kind == "survey_responses" and
                       self._erased[(kind, i)][1].get("survey_id") not in self._records["surveys"]]
            if orphans:
                raise ValueError(f"survey_responses {orphans!r} belong to a survey removed since: "
                                 f"restore the survey first")
            for rid in ids:
                updated_ms, record = self._erased.pop((kind, rid))
                self._put(kind, record, updated_ms)
            return list(ids)

    def stamp_records(self, kind: str, ids: list | None = None, at: str | None = None) -> list:
        """A bulk update: the records ``ids`` of ``kind`` (all of them when None) get one and the
        same ``updated_at``, to the millisecond: ``at`` (ISO 8601 with an offset) or now.
        Returns their ids. Unknown ids: KeyError, nothing changed."""
        if kind not in KINDS:
            raise KeyError(kind)
        at_us = None if at is None else _parse_updated(at)
        if at is not None and at_us is None:
            raise ValueError("at must be ISO 8601 with an offset")
        with self._lock:
            ids = sorted(self._records[kind]) if ids is None else list(ids)
            missing = [i for i in ids if i not in self._records[kind]]
            if missing:
                raise KeyError(f"no {kind} with ids {missing[:5]!r}")
            at_ms = self._now_ms() if at_us is None else at_us // 1000
            stamp = data.format_ms(at_ms)
            for rid in ids:
                self._put(kind, {**self._records[kind][rid], "updated_at": stamp}, at_ms)
            return ids

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
        if type(record["id"]) is int and kind in self._issued:
            self._issued[kind] = max(self._issued[kind], record["id"])
        if kind == "surveys" and isinstance(record.get("questions"), list):
            self._issued["questions"] = max([self._issued["questions"], *(
                q["id"] for q in record["questions"]
                if isinstance(q, dict) and type(q.get("id")) is int)])
        self._records[kind][record["id"]] = record
        self._updated[kind][record["id"]] = updated_ms
        self.version += 1

    def _delete(self, kind: str, ids: list) -> None:
        for rid in ids:
            del self._records[kind][rid]
            del self._updated[kind][rid]
        self.version += 1

    def _questions(self, survey_id: Any) -> list[dict]:
        """The well-formed questions of a survey ([] if unknown or patched into another shape),
        so generated answers keep working after :meth:`patch_records`."""
        questions = (self._records["surveys"].get(survey_id) or {}).get("questions")
        if not isinstance(questions, list):
            return []
        return [
            q for q in questions
            if isinstance(q, dict) and type(q.get("id")) is int and q.get("type") is not None
        ]

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _sample(self, kind: str, count: int) -> list:
        ids = sorted(self._records[kind])  # sorted: deterministic regardless of dict history
        return self._rng.sample(ids, min(count, len(ids)))

    def _next_response_id(self) -> int:
        return self._issued["survey_responses"] + 1

    def _new_responses(self, count: int, survey_id: int | None, delay_ms: int) -> list[int]:
        with self._lock:
            at = self._now_ms() - delay_ms
            surveys = sorted(self._records["surveys"])
            # A silent device stays silent: new responses go to the others.
            devices = sorted(set(self._records["devices"]) - set(self.silent_device_ids))
            if survey_id is not None and survey_id not in self._records["surveys"]:
                raise KeyError(survey_id)
            if not surveys or not devices:
                raise ValueError("responses need at least one survey and one device")
            ids = []
            next_id = self._next_response_id()  # once: a max over every id per record is O(n²)
            for _ in range(count):
                sid = survey_id if survey_id is not None else self._rng.choice(surveys)
                record = data.make_response(
                    self._rng,
                    next_id,
                    {"id": sid, "questions": self._questions(sid)},
                    self._rng.choice(devices),
                    at,
                    at,
                )
                self._put("survey_responses", record, at)
                ids.append(record["id"])
                next_id += 1
            return ids


_MISSING = object()


def _json_copy(value: Any, allow_nan: bool = False) -> Any:
    """A deep copy through JSON, so only JSON values get stored (else ValueError); with
    ``allow_nan`` also NaN and the infinities (as Python's json writes and reads them)."""
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=allow_nan))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a JSON value: {exc}") from None


def _parse_updated(value: Any) -> int | None:
    """``updated_at`` as microseconds if it is ISO 8601 with an offset, else None."""
    if not isinstance(value, str):
        return None
    try:
        return window.parse_bound("updated_at", value)
    except (ValueError, OverflowError):
        return None


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
