"""The pull's parts without peers: the request, the run id, the run state, the audit sums."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from gateway.keys.keyed_hash import KeyedHash
from gateway.pull.report import gateway_side
from gateway.pull.request import PullRequest, RequestError, csv_request, run_id
from gateway.pull.retrieve import _collect
from gateway.pull.run_state import RunState

HASH = KeyedHash(b"s" * 32)


def test_csv_column_is_found_by_its_name_and_says_the_key(tmp_path: Path) -> None:
    table = tmp_path / "r.csv"
    table.write_text("name,PatientID\na,P1\nb,\nc,P2\nd,P1\n", encoding="utf-8")
    request = csv_request(table, None, None)
    assert request.kind == "patient"
    assert request.values == ("P1", "P2") and request.where == ("row 2", "row 4")


def test_csv_column_of_unknown_kind_needs_the_key(tmp_path: Path) -> None:
    table = tmp_path / "r.csv"
    table.write_text("id\nX1\n", encoding="utf-8")
    with pytest.raises(RequestError, match="--key"):
        csv_request(table, None, None)
    assert csv_request(table, "id", "accession").values == ("X1",)
    with pytest.raises(RequestError, match="no column"):
        csv_request(table, "other", "accession")


@pytest.mark.parametrize("value", ["ACC*", "AC?1", "A1\\A2"])
def test_keys_that_would_match_more_than_themselves_are_refused(value: str) -> None:
    with pytest.raises(RequestError, match="argument 2"):
        PullRequest.from_arguments("accession", ["A0", value])


def test_run_id_is_the_set_of_keys_and_names_none_of_them() -> None:
    one = PullRequest.from_arguments("accession", ["A1", "A2"])
    two = PullRequest.from_arguments("accession", ["A2", "A1", "A2"])
    other = PullRequest.from_arguments("patient", ["A1", "A2"])
    assert run_id(one, HASH) == run_id(two, HASH) != run_id(other, HASH)
    assert len(run_id(one, HASH)) == 16 and "A1" not in run_id(one, HASH)


def test_run_state_survives_as_written_and_is_private(tmp_path: Path) -> None:
    state = RunState.open(tmp_path / "pull", "0123456789abcdef")
    study = state.study("aa" * 8)
    study.status, study.expected, study.done = "partial", 3, ["h1", "h2"]
    state.save()
    again = RunState.open(tmp_path / "pull", "0123456789abcdef")
    assert again.study("aa" * 8).done == ["h1", "h2"] and again.created == state.created
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600
    assert [p.name for p in state.path.parent.iterdir()] == [state.path.name]


def test_gateway_side_sums_the_runs_study_rounds_since_it_began(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    records = [
        {"ts": "2026-01-01T00:00:00+00:00", "event": "study_round", "study_hash": "a",
         "result": "forwarded", "instances_out": 9, "instances_quarantined": 0},
        {"ts": "2026-02-01T00:00:00+00:00", "event": "study_round", "study_hash": "a",
         "result": "forwarded", "instances_out": 3, "instances_quarantined": 1},
        {"ts": "2026-02-01T00:00:01+00:00", "event": "study_round", "study_hash": "b",
         "result": "failed", "instances_out": 0, "instances_quarantined": 0},
        {"ts": "2026-02-01T00:00:02+00:00", "event": "study_round", "study_hash": "z",
         "result": "forwarded", "instances_out": 5, "instances_quarantined": 0},
    ]  # fmt: skip
    audit.write_text("\n".join(map(json.dumps, records)) + "\n{cut off", encoding="utf-8")
    side = gateway_side(audit, ["a", "b"], "2026-01-15T00:00:00+00:00")
    assert (side.studies_closed, side.forwarded, side.quarantined, side.failed_rounds) == (
        2, 3, 1, 1,
    )  # fmt: skip


def _response(
    status: int, completed: int, failed: int, listed: list[str] | None = None
) -> tuple[Dataset, Dataset | None]:
    answer = Dataset()
    answer.Status = status
    answer.NumberOfCompletedSuboperations = completed
    answer.NumberOfFailedSuboperations = failed
    answer.NumberOfWarningSuboperations = 0
    identifier = None
    if listed is not None:
        identifier = Dataset()
        identifier.FailedSOPInstanceUIDList = listed
    return answer, identifier


def test_a_move_with_failures_counts_as_done_what_the_archive_did_not_list_as_failed() -> None:
    """PS3.4 C.4.2.1.4.2: a final C-MOVE response with failures carries the Failed SOP
    Instance UID List; only those are asked for again."""
    asked = ["1.1", "1.2", "1.3", "1.4"]
    pending = _response(0xFF00, 1, 0)
    some = _collect(iter([pending, _response(0xB000, 2, 2, ["1.2", "1.4"])]), "C-MOVE")
    assert some.moved(asked) == ["1.1", "1.3"]
    one = _collect(iter([_response(0xB000, 3, 1, ["1.3"])]), "C-MOVE")
    assert one.moved(asked) == ["1.1", "1.2", "1.4"]
    unlisted = _collect(iter([_response(0xB000, 2, 2)]), "C-MOVE")
    assert unlisted.moved(asked) == []  # which failed is not said: the batch goes again
    strange = _collect(iter([_response(0xB000, 2, 2, ["9.9", "1.4"])]), "C-MOVE")
    assert strange.moved(asked) == []  # a UID that was not asked for: trust nothing
    refused = _collect(iter([_response(0xA701, 0, 4, asked)]), "C-MOVE")
    assert refused.moved(asked) == []
    clean = _collect(iter([_response(0x0000, 4, 0)]), "C-MOVE")
    assert clean.moved(asked) == asked
