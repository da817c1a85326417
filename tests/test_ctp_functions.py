"""CTP's arithmetic, pair by pair: tests/data/ctp/function-pairs.tsv holds what the real
CTP's AnonymizerFunctions returned for each request (see tests/data/ctp/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.deid.ctp import arithmetic as fx
from gateway.deid.ctp.syntax import ScriptSyntaxError, check_script, parse_call

PAIRS = Path(__file__).parent / "data" / "ctp" / "function-pairs.tsv"


def _rows() -> list[list[str]]:
    return [line.split("\t") for line in PAIRS.read_text(encoding="utf-8").splitlines() if line]


def _ours(fields: list[str]) -> str:
    name, args = fields[0], fields[1:]
    calls = {
        "hash": lambda: fx.ctp_hash(args[0], int(args[1])),
        "hashptid": lambda: fx.hash_ptid(args[0], args[1], int(args[2])),
        "hashuid": lambda: fx.hash_uid(args[0], args[1]),
        "hashname": lambda: fx.hash_name(args[0], int(args[1]), int(args[2])),
        "initials": lambda: fx.initials(args[0]),
        "caesar": lambda: fx.caesar(args[0], int(args[1])),
        "round": lambda: fx.round_age(args[0], int(args[1])),
        "incrementdate": lambda: fx.increment_date(args[0], int(args[1])),
        "modifydate": lambda: fx.modify_date(args[0], *(int(a) for a in args[1:4])),
        "encrypt": lambda: fx.encrypt(args[0], args[1]),
    }
    try:
        return calls[name]()
    except (ValueError, IndexError):
        return "!error"


@pytest.mark.parametrize("row", _rows(), ids=lambda r: "-".join(r[:2])[:40])
def test_function_gives_what_real_ctp_gave(row: list[str]) -> None:
    *request, expected = row
    got = _ours(request)
    if expected.startswith("!"):
        assert got == "!error"
    else:
        assert got == expected


def test_enough_pairs_from_real_ctp() -> None:
    names = {row[0] for row in _rows()}
    assert names >= {"hash", "hashptid", "hashuid", "hashname", "initials", "round",
                     "incrementdate", "modifydate", "encrypt", "caesar"}  # fmt: skip


def test_decrypt_inverts_ctp_encrypt() -> None:
    for row in _rows():
        if row[0] == "encrypt":
            assert fx.decrypt(row[3], row[2]) == row[1]


def test_hashdate_offset_is_within_ten_years_and_never_zero() -> None:
    for value in ("", "ZQ-998877-X", "1", "PAT-0001"):
        inc = fx.hashdate_increment(value)
        assert -3649 <= inc <= -1
    # the hash of "ZQ-998877-X" ends in ...9403: 9403 % 3650 = 2103 days back
    assert fx.ctp_hash("ZQ-998877-X").endswith("9403")
    assert fx.hashdate_increment("ZQ-998877-X") == -2103


def test_days_between_reads_ctp_base_dates() -> None:
    assert fx.days_between("20040119", "1/19/2004") == 0
    assert fx.days_between("20040119", "3/15/1990") == 5058  # as real CTP wrote it


def test_java_split_and_replace_all() -> None:
    assert fx.java_split("a/b/", "/") == ["a", "b"]
    assert fx.java_split("/a", "/") == ["", "a"]
    assert fx.java_replace_all("Doe^John", "(\\w+)\\^(\\w+)", "$2 $1") == "John Doe"


def test_parser_follows_ctp_argument_rules() -> None:
    call = parse_call('contents(this,"[a,b]",x(1,2)) tail')
    assert call.name == "contents"
    assert call.args == ["this", '"[a,b]"', "x(1,2)"]
    assert call.arg(1) == "[a,b]"
    clause = parse_call("if(this,isblank){A{B}}{C} rest")
    assert (clause.true_code, clause.false_code) == ("A{B}", "C")
    assert parse_call("keep").length == -1


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("@call(myplugin,this)", "@call() runs a CTP plugin"),
        ("@frobnicate(this)", "unknown function @frobnicate()"),
        ("@if(this,isblank){A}", "needs 2 {...} clauses"),
        ("@hash(this", "does not start a complete function call"),
        ("user@example", "does not start a complete function call"),
        ("@modifydate(this,2000)", "needs at least 4 arguments"),
    ],
)
def test_syntax_errors(script: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):  # fmt: skip
        check_script(script)


def test_escaped_at_sign_is_text() -> None:
    assert check_script("mail\\@example.org") == []
