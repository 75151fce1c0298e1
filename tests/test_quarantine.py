"""The quarantine policy on its own: which records are set aside, and what still flows."""

from datetime import UTC, datetime

from pipelines.micrometrics.quarantine import rejection_reason, split_records
from pipelines.micrometrics.rounds import ExtractTally, SurveyIndex, SyncBounds
from pipelines.micrometrics.source import read_survey_list


def test_reasons():
    assert rejection_reason({"id": 1, "updated_at": "2026-01-01T00:00:00Z"}) is None
    assert rejection_reason({"updated_at": "2026-01-01T00:00:00Z"}) == "no id"
    assert rejection_reason({"id": 1}) == "no updated_at"
    assert "not an ISO 8601" in rejection_reason({"id": 1, "updated_at": "2026-01-01 00:00"})
    # A year, a date, a week or a number is no instant: not guessed as a midnight UTC.
    for vague in ("2024", "2024-01-01", "2024-W05", 20240101, "2024-01-01+00:00"):
        assert "not an ISO 8601" in rejection_reason({"id": 1, "updated_at": vague}), vague
    assert rejection_reason({"id": 1, "updated_at": "2026-01-01 10:00:00.123456789+02:00"}) is None
    assert rejection_reason(["not", "a", "record"]).startswith("not a JSON object")


def test_split_keeps_every_record_somewhere_and_keys_are_stable():
    records = [{"id": 1, "updated_at": "2026-01-01T00:00:00Z"}, {"id": 2}, {"name": "x"}]
    good, rejected = split_records(records, "devices")
    assert good == records[:1] and len(rejected) == 2
    again = split_records(records, "devices")[1]
    assert [r["record_key"] for r in rejected] == [r["record_key"] for r in again]
    assert {r["reason"] for r in rejected} == {"no updated_at", "no id"}


class ListingClient:
    """Answers the survey listing with fixed pages (no HTTP: the policy is under test)."""

    def __init__(self, pages):
        self.listing = pages

    def pages(self, path, params):
        assert path == "/surveys"
        yield from self.listing


def test_a_quarantined_survey_still_indexes_its_responses():
    surveys = [
        {"id": 1, "updated_at": "2026-01-01T00:00:00Z", "created_at": "2025-01-01T00:00:00Z"},
        {"id": 2, "updated_at": "garbage"},
        {"name": "no id at all"},
    ]
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    index, tally = SurveyIndex(), ExtractTally()
    read_survey_list(ListingClient([surveys]), SyncBounds(moment, moment), index, tally)
    assert [s["id"] for s in index.listed] == [1]  # loaded into surveys
    assert [s["id"] for s in index.indexed] == [1, 2]  # responses read for both
    assert len(index.rejected) == 2 and tally.rejected == 2
    read_survey_list(ListingClient([surveys]), SyncBounds(moment, moment), SurveyIndex(), tally)
    assert tally.rejected == 2  # the same two records read again are still two
