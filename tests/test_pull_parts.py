"""The pull's parts without peers: the request, the run id, the run state, the audit sums."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gateway.keys.keyed_hash import KeyedHash
from gateway.pull.report import gateway_side
from gateway.pull.request import PullRequest, RequestError, csv_request, run_id
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
