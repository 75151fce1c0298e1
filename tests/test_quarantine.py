"""The quarantine policy on its own: which records are set aside, and what still flows."""

import copy
from datetime import UTC, datetime

from pipelines.micrometrics.lenient_json import (
    UnloadableRecord,
    as_sent,
    might_overflow,
    parse_leniently,
)
from pipelines.micrometrics.quarantine import rejection_reason, split_records
from pipelines.micrometrics.questions import question_rows
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


def test_a_time_that_is_none_once_in_utc_is_named_wherever_it_sits():
    stamp = "2026-01-01T00:00:00Z"
    for fine in ("9999-12-31T23:59:59Z", "0001-01-01", "0001-01-01T00:00:00-05:00",
                 "9999-12-31T10:00:00+14:00", "9999-12-31 is the end", "0001-01-01T00:00:00"):
        assert rejection_reason({"id": 1, "updated_at": stamp, "x": fine},
                                "survey_responses") is None, fine
    record = {"id": 1, "updated_at": stamp, "answers": [
        {"question_id": 1, "meta": {"at": "9999-12-31T23:59:59.999-00:01"}}]}
    assert rejection_reason(record, "survey_responses") == (
        "answers[].meta.at '9999-12-31T23:59:59.999-00:01' is before year 1 or after 9999 "
        "once in UTC")
    assert rejection_reason({"id": "d", "updated_at": stamp, "a": [{"b": "0001-01-01T00:00+01"}]},
                            "devices") == (
        "a[].b '0001-01-01T00:00+01' is before year 1 or after 9999 once in UTC")
    # A list of times (dlt's nested table reads its values as times), and the other ISO 8601
    # forms dlt reads: basic, ordinal, week.
    for value in ("00010101T000000+0545", "0001-001T00:00+05:45", "0001-W01-1T00:00+05:45"):
        assert rejection_reason({"id": "d", "updated_at": stamp, "seen": ["x", [value]]},
                                "devices") == (
            f"seen[][] {value!r} is before year 1 or after 9999 once in UTC")


def test_a_page_without_the_dates_of_such_a_time_is_not_walked_for_them():
    stamp = "2026-01-01T00:00:00Z"
    edge = [{"id": 1, "updated_at": stamp, "created_at": "0001-01-01T00:00:00+05:45"}]
    for body in (None, b'[{"created_at": "0001-01-01T00:00:00+05:45"}]',
                 b'[{"created_at": "\\u0030001-01-01T00:00:00+05:45"}]',
                 b'[{"created_at": "0001\\u002d01\\u002d01T00:00:00+05:45"}]'):
        good, rejected = split_records(copy.deepcopy(edge), "devices", body)
        assert (good, len(rejected)) == ([], 1), body
    good, rejected = split_records(copy.deepcopy(edge), "devices", b'[{"id": 1}]')
    assert (len(good), rejected) == (1, [])  # what a body without them cannot hold


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

    def now(self):
        return datetime(2026, 11, 1, tzinfo=UTC)


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


def test_keys_of_the_wrong_type_and_lists_that_are_not_lists_of_objects():
    at = "2026-01-01T00:00:00Z"
    # What dlt reads as an integer key passes (digits as text, an integral float) ...
    for key in (237, "237", " 237", 237.0, -5, 2**63 - 1):
        assert rejection_reason({"id": key, "updated_at": at}, "surveys") is None, key
    # ... and what it would load NULL does not.
    for key in ("R-0", "1.0", True, 237.5, 2**63, "9" * 30, "9" * 5000, [1], {"a": 1}):
        reason = rejection_reason({"id": key, "updated_at": at}, "survey_responses[237]")
        assert reason is not None and reason.startswith("id "), key
    for key in ("Tgc9VyKJ-8a9", 42):
        assert rejection_reason({"id": key, "updated_at": at}, "devices") is None
    for key in ("", True, 1.5, {"hash": "x"}):
        assert rejection_reason({"id": key, "updated_at": at}, "devices") is not None
    ok = {"id": 1, "updated_at": at}
    assert rejection_reason({**ok, "answers": None}, "survey_responses[1]") is None
    assert rejection_reason({**ok, "answers": [{"question_id": 1}]}, "survey_responses[1]") \
        is None
    assert rejection_reason({**ok, "answers": {"1": 9}}, "survey_responses[1]") == (
        "answers is dict, not a list of objects")
    assert rejection_reason({**ok, "questions": ["q"]}, "surveys") == (
        "questions holds str 'q', not an object")
    assert rejection_reason({**ok, "answers": {"1": 9}}, "devices") is None  # not read there


def test_pages_a_strict_parser_refuses_are_read_record_by_record():
    body = (b'{"data": [{"id": 1, "v": NaN}, {"id": 2, "c": "\\ud83d"}, {"id": 3, "v": -Infinity},'
            b' {"id": 4, "v": 1e400}, {"id": 5, "k": {"\\udc00": 1}}, {"id": 6, "n": 1.5}]}')
    records = parse_leniently(body)["data"]
    assert [isinstance(r, UnloadableRecord) for r in records] == [True] * 5 + [False]
    assert records[0].reason.startswith("a number that is not finite")
    assert records[1].reason.startswith("text with a lone UTF-16 surrogate")
    # Integers beyond a signed 64-bit one (dlt's normalize fails on them), kept exact.
    records = parse_leniently(b'[{"v": 9223372036854775807}, {"v": 9223372036854775808}, '
                              b'{"v": -9223372036854775809}, {"v": [1e2, 1' + b"0" * 29 + b"]}]")
    assert [getattr(r, "reason", None) for r in records] == [None] + [
        "an integer beyond a signed 64-bit one"] * 3
    assert [r["v"] for r in records[:3]] == [2**63 - 1, 2**63, -(2**63) - 1]
    assert as_sent(records[3]) == '{"v": [100.0, 1' + "0" * 29 + "]}"
    assert not might_overflow(b'[{"id": 9223372036854775, "at": "2026-01-01T00:00:00Z"}]')
    assert might_overflow(b'[{"v": 9223372036854775808}]')


def test_a_survey_kept_aside_for_one_bad_value_keeps_its_other_questions():
    """Its responses are read: their answers need their questions' types (else
    answers_have_known_question failed every build)."""
    survey = parse_leniently(b'[{"id": 5, "name": "\\ud800", "questions": [{"id": 1, "type": '
                             b'"nps"}, {"id": 2, "text": "\\udc00"}]}]')[0]
    assert isinstance(survey, UnloadableRecord)
    assert question_rows([survey]) == [{"id": 1, "type": "nps", "survey_id": 5}]


def test_two_keys_for_one_column_are_set_aside_only_when_they_disagree():
    at = "2026-01-01T00:00:00Z"
    # An alias sent with the same value (a vendor's camelCase for compatibility) loses nothing.
    assert rejection_reason({"id": 1, "updated_at": at, "survey_id": 5, "surveyId": 5},
                            "survey_responses[5]") is None
    # The same as JSON, not as Python (1 == True): dlt loads true into an integer key NULL,
    # and the package failed every sync after.
    assert rejection_reason({"id": 1, "ID": True, "updated_at": at}, "survey_responses[5]") == (
        "keys 'id' and 'ID' both load into the column 'id'")
    # Kept once, under the column's own name: dlt loads whichever comes last, and the times
    # are put in a form dlt reads by that name (an offset with seconds loaded NULL).
    odd = "2026-01-01T00:00:00+00:00:00"
    [good], rejected = split_records(
        [{"id": 2, "updatedAt": odd, "updated_at": odd, "survey_id": 5, "surveyId": 5,
          "answers": [{"questionId": 7, "question_id": 7, "value": 9}]}], "survey_responses[5]")
    assert rejected == [] and good == {"id": 2, "updated_at": "2026-01-01T00:00:00.000+00:00",
                                       "survey_id": 5,
                                       "answers": [{"question_id": 7, "value": 9}]}
    assert rejection_reason({"id": "d", "updated_at": at, "name": "a", "Name": "b"},
                            "devices") == "keys 'name' and 'Name' both load into the column 'name'"
    # Keys each seen alone before are no pass for the two together (the check skips records
    # of keys known to load into a column of their own name: "Location" is not one).
    assert rejection_reason({"id": "d", "updated_at": at, "location": "y"}, "devices") is None
    assert rejection_reason({"id": "d", "updated_at": at, "Location": "x"}, "devices") is None
    assert rejection_reason({"id": "d", "updated_at": at, "location": "y", "Location": "x"},
                            "devices") == ("keys 'location' and 'Location' both load into the "
                                           "column 'location'")


def test_keys_that_load_into_one_column_from_within_an_object_are_set_aside():
    """dlt spreads an object over columns ``<key>__<its key>``, keeping the last value sent
    for a column: ``meta.ID`` replaced ``meta.id``."""
    at = "2026-01-01T00:00:00Z"
    assert rejection_reason({"id": "d", "updated_at": at, "meta": {"ID": 1, "id": 2}},
                            "devices") == ("keys 'meta.ID' and 'meta.id' both load into the "
                                           "column 'meta__id'")
    assert rejection_reason({"id": "d", "updated_at": at, "meta": {"id": 1}, "meta__id": 2},
                            "devices") == ("keys 'meta__id' and 'meta.id' both load into the "
                                           "column 'meta__id'")
    assert rejection_reason({"id": "d", "updated_at": at, "m": {"a__b": 1, "a": {"b": 2}}},
                            "devices") == ("keys 'm.a__b' and 'm.a.b' both load into the "
                                           "column 'm__a__b'")
    assert rejection_reason({"id": "d", "updated_at": at, "a": {"M": {"id": 1}, "m": {"id": 2}}},
                            "devices") == ("keys 'a.m.id' and 'a.M.id' both load into the "
                                           "column 'a__m__id'")
    assert rejection_reason({"id": "d", "updated_at": at, "a": {"b": {"C": 1, "c": 2}}},
                            "devices") == ("keys 'a.b.C' and 'a.b.c' both load into the column "
                                           "'a__b__c'")
    assert rejection_reason(
        {"id": 1, "updated_at": at, "answers": [
            {"question_id": 7, "value": 9, "extra": {"Note": "x", "note": "y"}}]},
        "survey_responses[5]") == ("answers: keys 'extra.Note' and 'extra.note' both load "
                                   "into the column 'extra__note'")
    # A blank key's column is _empty, as dlt names it.
    for blank in ("", " "):
        assert rejection_reason({"id": "d", "updated_at": at, blank: "x", "_empty": "y"},
                                "devices") == (f"keys {blank!r} and '_empty' both load into the "
                                               f"column '_empty'")
        assert rejection_reason({"id": "d", "updated_at": at, "m": {blank: 1, "_empty": 2}},
                                "devices") is not None
    # Loaded as it is, the key "" of a stream without a list of objects too.
    [good], [] = split_records([{"id": "d", "updated_at": at, "": "kiosk", "name": "a"}],
                               "devices")
    assert good[""] == "kiosk"
    # Nothing lost: the same value twice, an object and a key beside it that is no column of
    # it, objects nested apart, an empty object.
    # (dlt keeps "a__b" apart from "a b", whose column is a_b.)
    for fine in ({"meta": {"ID": 1, "id": 1}}, {"meta": {"id": 1}, "meta_id": 2},
                 {"a__b": 1, "a b": 2}, {"e": {"a__b": 1, "aB": None}},
                 {"B": {"x": 1}, "b": {"y": 2}},
                 {"a": {"b": 1}, "b": {"a": 2}}, {"meta": {}, "meta__x": 1},
                 {"A": {"x": 1}, "a": {"x": 1}}):
        assert rejection_reason({"id": "d", "updated_at": at, **fine}, "devices") is None, fine
