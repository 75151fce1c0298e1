"""Deterministic, seeded generation of sandbox records and the timestamp format they use.

Everything here is a pure function of ``(seed, anchor)``: the same seed and the same anchor
minute give byte-identical data, so tests can compare runs.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000

# Unicode on purpose: the connector must round-trip it through every destination.
DEVICE_NAMES = [
    "Café Nord ☕", "Zürich Hbf", "東京", "Lobby Kiosk", "Gate 12 – Arrivals", "São Paulo Loja",
    "Kraków Rynek", "Ørestad Syd", "Main St. \"Express\"", "Dubai Mall 🛍️", "Reykjavík",
    "Front Desk", "Ñandú Plaza", "Αθήνα", "Warehouse #3",
]
TIMEZONES = [
    "Europe/Berlin", "Europe/Zurich", "Asia/Tokyo", "America/New_York", "America/Sao_Paulo",
    "Europe/Warsaw", "Asia/Dubai", "Atlantic/Reykjavik", "Australia/Sydney", "UTC",
]
FIRMWARE = ["1.4.2", "1.5.0", "2.0.0-rc1", "2.0.1"]
SURVEY_NAMES = [
    "Store Experience", "Checkout Feedback", "Restroom Cleanliness", "Staff Friendliness",
    "Überall zufrieden?", "Net Promoter – Q4", "Café Quality ☕",
]
TEXTS = [
    "Great service!", "Très bien, merci 👍", 'The "express" lane wasn\'t express', "",
    "Line one\nline two", "Sehr gut — weiter so", "最高でした", "meh 😐", "Ça va… 5/5",
    "Too cold 🥶, please fix the AC", "comma, separated, text", "emoji only 🎉🎉🎉",
    "Back\\slash and tab\tchar",
]
CHOICES = ["Yes", "No", "Maybe", "Not applicable"]
QUESTION_TEXTS = {
    "nps": "How likely are you to recommend us to a friend?",
    "rating": "How would you rate your visit today?",
    "text": "Anything else you would like to tell us?",
    "choice": "Did you find what you were looking for?",
}


def format_ms(ms: int) -> str:
    """Formats UNIX milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    dt = EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def device_id(rng: random.Random) -> str:
    """A 22-character url-safe hash id, like ``Tgc9VyKJ-8a9-89uV7wwVc``."""
    return base64.urlsafe_b64encode(rng.randbytes(16)).decode("ascii")[:22]


def make_device(rng: random.Random, created_ms: int, updated_ms: int) -> dict[str, Any]:
    """One device record; ``timezone`` and ``firmware_version`` vary in presence on purpose."""
    device: dict[str, Any] = {
        "id": device_id(rng),
        "name": rng.choice(DEVICE_NAMES),
        "status": "active" if rng.random() < 0.85 else "inactive",
        "location_id": rng.randint(100, 999),
    }
    roll = rng.random()
    if roll < 0.7:
        device["timezone"] = rng.choice(TIMEZONES)
    elif roll < 0.85:
        device["timezone"] = None
    # else: key absent, which the connector must tolerate.
    if rng.random() < 0.4:
        device["firmware_version"] = rng.choice(FIRMWARE)
    device["created_at"] = format_ms(created_ms)
    device["updated_at"] = format_ms(updated_ms)
    return device


def make_questions(rng: random.Random, first_id: int) -> list[dict[str, Any]]:
    """Questions of one survey: always an nps, usually rating and text, sometimes choice."""
    types = ["nps"]
    types += [t for t, p in (("rating", 0.8), ("text", 0.8), ("choice", 0.4)) if rng.random() < p]
    return [
        {"id": first_id + i, "type": t, "text": QUESTION_TEXTS[t]} for i, t in enumerate(types)
    ]


def make_answers(rng: random.Random, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers to ``questions``: some skipped, some explicitly null."""
    answers = []
    for question in questions:
        roll = rng.random()
        if roll < 0.08:
            continue  # unanswered: no entry at all
        if roll < 0.13:
            value: Any = None
        elif question["type"] == "nps":
            value = rng.randint(0, 10)
        elif question["type"] == "rating":
            value = rng.randint(1, 5)
        elif question["type"] == "text":
            value = rng.choice(TEXTS)
        else:
            value = rng.choice(CHOICES)
        answers.append({"question_id": question["id"], "value": value})
    return answers


def maybe_comment(rng: random.Random, record: dict[str, Any]) -> None:
    """Sets ``comment`` on about a third of records (a fifth of those null), else leaves it out."""
    record.pop("comment", None)
    roll = rng.random()
    if roll < 0.07:
        record["comment"] = None
    elif roll < 0.33:
        record["comment"] = rng.choice(TEXTS)


def make_response(
    rng: random.Random,
    response_id: int,
    survey: dict[str, Any],
    device: str,
    created_ms: int,
    updated_ms: int,
) -> dict[str, Any]:
    """One survey response record."""
    record: dict[str, Any] = {
        "id": response_id,
        "survey_id": survey["id"],
        "device_id": device,
        "created_at": format_ms(created_ms),
        "updated_at": format_ms(updated_ms),
        "answers": make_answers(rng, survey["questions"]),
    }
    maybe_comment(rng, record)
    return record


def _devices(rng: random.Random, count: int, anchor: int) -> list[tuple[int, dict]]:
    """Devices: ~15% changed in the last 20 days, the rest 35 to 420 days ago."""
    out = []
    for i in range(count):
        if i == 0:
            age = 420 * DAY_MS  # guarantees a spread of more than a year
        elif rng.random() < 0.15:
            age = rng.randint(0, 20 * DAY_MS)
        else:
            age = rng.randint(35 * DAY_MS, 420 * DAY_MS)
        updated = anchor - age
        created = updated - rng.randint(0, 200 * DAY_MS)
        out.append((updated, make_device(rng, created, updated)))
    return out


def _surveys(rng: random.Random, count: int, anchor: int) -> list[tuple[int, dict]]:
    """Surveys with ids from 237 and globally unique question ids."""
    out, question_id = [], 1001
    for i in range(count):
        questions = make_questions(rng, question_id)
        question_id += len(questions)
        updated = anchor - rng.randint(0, 300 * DAY_MS)
        created = updated - rng.randint(0, 100 * DAY_MS)
        survey = {
            "id": 237 + i,
            "name": SURVEY_NAMES[i % len(SURVEY_NAMES)],
            "questions": questions,
            "created_at": format_ms(created),
            "updated_at": format_ms(updated),
        }
        out.append((updated, survey))
    return out


def _response_times(rng: random.Random, count: int, anchor: int) -> list[int]:
    """updated_at values over ~13 months, denser recently, with clusters of equal values."""
    # age = 395 days * u^2 puts more mass near the anchor (recent months are denser).
    times = [anchor - int(395 * DAY_MS * rng.random() ** 2) for _ in range(count)]
    # Clusters sharing one exact timestamp stress window boundaries and keyset ties;
    # two of them sit on a whole second, the others carry milliseconds.
    n_clusters = min(6, count // 8)
    for c in range(n_clusters):
        at = anchor - rng.randint(0, 390 * DAY_MS)
        if c < 2:
            at -= at % 1000
        for idx in rng.sample(range(count), rng.randint(3, 8)):
            times[idx] = at
    return times


# A silent device's last response is older than this (dim_devices calls an active device
# silent after 7 days without one).
SILENT_DAYS = 21


def silent_device_ids(device_rows: list[tuple[int, dict]], count: int) -> list[str]:
    """The first ``count`` active devices: those that stopped responding."""
    return [d["id"] for _, d in device_rows if d["status"] == "active"][:count]


def generate(
    seed: int, anchor_ms: int, devices: int, surveys: int, responses: int,
    silent_devices: int = 0,
) -> dict[str, list[tuple[int, dict]]]:
    """Builds the initial data set.

    Args:
        seed: RNG seed; same seed and anchor give identical data.
        anchor_ms: The "now" of the data set in UNIX ms (the sandbox uses its start minute).
        devices: Number of devices.
        surveys: Number of surveys.
        responses: Total number of survey responses, spread unevenly over the surveys.
        silent_devices: Active devices with no response in the last ``SILENT_DAYS`` days (a
            kiosk unplugged or broken): their recent responses go to the other devices.

    Returns:
        ``{kind: [(updated_at_ms, record), ...]}`` for devices, surveys and survey_responses.
    """
    rng = random.Random(seed)
    device_rows = _devices(rng, devices, anchor_ms)
    survey_rows = _surveys(rng, surveys, anchor_ms)
    response_rows: list[tuple[int, dict]] = []
    if survey_rows and device_rows:
        # Uneven spread: survey i gets weight 1/(i+1).
        weights = [1 / (i + 1) for i in range(len(survey_rows))]
        device_ids = [d["id"] for _, d in device_rows]
        silent = set(silent_device_ids(device_rows, silent_devices))
        loud_ids = [i for i in device_ids if i not in silent]
        if not loud_ids:
            raise ValueError("silent_devices must leave at least one device responding")
        silent_since = anchor_ms - SILENT_DAYS * DAY_MS
        response_id = 10_000
        for updated in _response_times(rng, responses, anchor_ms):
            response_id += rng.randint(1, 3)  # gaps, like a real shared sequence
            survey = rng.choices(survey_rows, weights)[0][1]
            created = updated - (rng.randint(0, 3 * DAY_MS) if rng.random() < 0.2 else 0)
            device = rng.choice(device_ids)
            if device in silent and created >= silent_since:
                device = loud_ids[response_id % len(loud_ids)]  # no draw: the rest stays put
            record = make_response(rng, response_id, survey, device, created, updated)
            response_rows.append((updated, record))
    return {"devices": device_rows, "surveys": survey_rows, "survey_responses": response_rows}
