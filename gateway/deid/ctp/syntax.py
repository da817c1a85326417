"""The syntax of CTP's DicomAnonymizer script language: one function call at a time.

A script is text with function calls `@name(arg, ...)`; `@if`/`@select` take two `{...}`
clauses and `@append` one. `\\` escapes the next character. These rules follow CTP's own
reader (FnCall) closely, because a script must mean here what it means in CTP: arguments
split at `,` or `)` outside quotes, brackets and parentheses; an argument is trimmed; a
quoted argument loses its quotes only where a function asks for the argument's text.

`check_script` runs the same reader over a script at load time, so that a call CTP would
misread or that this gateway does not support is a `ScriptSyntaxError` before any data
flows, where CTP would quietly write the rest of the text into the element. A function's
name and `(` in plain text is such a call too, one whose `@` was forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

ESCAPE = "\\"
FUNCTION = "@"

# Every function of CTP's script language that produces a value or an effect.
FUNCTIONS = frozenset(
    {
        "contents", "value", "truncate", "date", "time", "param", "encrypt", "decrypt",
        "hash", "hashname", "hashptid", "hashuid", "hashdate", "incrementdate", "modifydate",
        "dateinterval", "round", "initials", "lowercase", "uppercase", "pathelement",
        "lookup", "integer", "if", "select", "append", "always", "require", "process",
        "quarantine", "skip",
    }
)  # fmt: skip
# Outcomes: CTP passes them through as text and acts on them after the script has run.
OUTCOMES = frozenset({"keep", "remove", "empty", "blank"})
_CLAUSE_COUNT = {"if": 2, "select": 2, "append": 1}
# Functions whose first argument names an element (checked at load time).
_MIN_ARGS = {
    "contents": 1, "value": 1, "truncate": 1, "hash": 1, "hashname": 2, "hashptid": 2,
    "hashuid": 2, "hashdate": 2, "incrementdate": 2, "modifydate": 4, "dateinterval": 3,
    "round": 2, "initials": 1, "lowercase": 1, "uppercase": 1, "pathelement": 2, "lookup": 2,
    "integer": 2, "if": 2, "encrypt": 2, "decrypt": 2, "param": 1,
}  # fmt: skip


class ScriptSyntaxError(ValueError):
    """A script CTP would misread, or a function this gateway does not run (`@call`)."""


class LenientSyntaxError(ScriptSyntaxError):
    """Text CTP's lenient parser writes into the element as it stands: an unknown function,
    a call without its `@`, an `@` that starts no call. Read leniently, the element goes."""


# A function's name and its `(` in plain text: a call whose `@` was forgotten (CTP writes it
# as text). Not after a letter, digit, `@` or `\`; case as CTP spells its functions.
_CALL_WITHOUT_AT = re.compile(
    r"(?<![\w@\\])(" + "|".join(sorted(FUNCTIONS | OUTCOMES | {"call"})) + r")\("
)


@dataclass
class FnCall:
    """One parsed call: name, raw arguments, clauses, and how much text it took."""

    name: str
    args: list[str] = field(default_factory=list)
    true_code: str = ""
    false_code: str = ""
    length: int = -1  # characters of the text after '@' that the call occupies; -1: none
    complete: bool = True  # False: a clause is missing and CTP took the rest of the text

    def arg(self, index: int) -> str:
        """Argument `index`, trimmed and without enclosing quotes ("" when absent)."""
        if index >= len(self.args):
            return ""
        text = self.args[index].strip()
        if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
            text = text[1:-1]
        return text

    def call_text(self) -> str:
        """The call as CTP rebuilds it (for a function that fails: the text is the value)."""
        return self.name + self.args_text()

    def args_text(self) -> str:
        return "(" + ",".join(self.args) + ")"


def parse_call(text: str) -> FnCall:
    """Parse the call that starts `text` (the text right after an '@')."""
    paren = text.find("(")
    if paren == -1:
        return FnCall(name="", length=-1)
    call = FnCall(name="".join(text[:paren].split()))
    pos = paren + 1
    while True:
        arg, pos = _next_arg(text, pos)
        if arg is None:
            break
        call.args.append(arg)
    pos = _skip_space(text, pos)
    if pos >= len(text):
        return FnCall(name=call.name, length=-1)
    pos += 1  # the closing ')'
    call.length = pos
    clauses = _CLAUSE_COUNT.get(call.name, 0)
    for index in range(clauses):
        found_clause = _clause(text, pos)
        if found_clause is None:
            call.length = len(text)  # CTP takes the rest of the script as the call
            call.complete = False
            return call
        clause, pos = found_clause
        if index == 0:
            call.true_code = clause
        else:
            call.false_code = clause
        pos += 1
        call.length = pos
    return call


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _next_arg(text: str, pos: int) -> tuple[str | None, int]:
    """One argument from `pos` and where reading stopped; None at ')' or the text's end."""
    pos = _skip_space(text, pos)
    if pos >= len(text) or text[pos] == ")":
        return None, pos
    in_escape = in_quote = in_bracket = in_paren = False
    brackets = parens = 0
    out: list[str] = []
    c = ""
    while pos < len(text):
        c = text[pos]
        if not (in_escape or in_quote or in_bracket or in_paren) and c in ",)":
            break
        if not in_escape and c == ESCAPE:
            in_escape = True
        else:
            out.append(c)
            if c == '"':
                in_quote = not in_quote
            if not in_quote:
                if c == "[":
                    in_bracket = True
                    brackets += 1
                elif in_bracket and c == "]":
                    brackets -= 1
                    in_bracket = brackets != 0
                elif c == "(":
                    in_paren = True
                    parens += 1
                elif in_paren and c == ")":
                    parens -= 1
                    in_paren = parens != 0
            in_escape = False
        pos += 1
    if pos >= len(text):
        return None, pos
    if c == ",":
        pos += 1
    return "".join(out).strip(), pos


def _clause(text: str, pos: int) -> tuple[str, int] | None:
    """A `{...}` clause from `pos` (nested braces counted); None when there is none."""
    pos = _skip_space(text, pos)
    if pos >= len(text) or text[pos] != "{":
        return None
    pos += 1
    depth = 1
    out: list[str] = []
    while pos < len(text):
        c = text[pos]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if depth == 0:
            break
        out.append(c)
        pos += 1
    if pos >= len(text):
        return None
    return "".join(out).strip(), pos


def _scan(script: str) -> Iterator[tuple[int, FnCall]]:
    """Each top-level call with the column after its `@`; an incomplete call ends the scan
    (it is yielded, with length -1, so that the caller can say so)."""
    i = 0
    escape = False
    while i < len(script):
        c = script[i]
        i += 1
        if escape:
            escape = False
        elif c == ESCAPE:
            escape = True
        elif c == FUNCTION:
            call = parse_call(script[i:])
            yield i, call
            if call.length == -1:
                return
            i += call.length


def iter_calls(script: str) -> list[FnCall]:
    """The top-level calls of a script, in order (clauses not entered)."""
    return [call for _, call in _scan(script) if call.length != -1]


def check_script(script: str) -> list[FnCall]:
    """Every call of a script, clauses included; raise ScriptSyntaxError on a bad one."""
    found: list[FnCall] = []
    _check(script, found, depth=0)
    return found


def _check_text(text: str) -> None:
    missing = _CALL_WITHOUT_AT.search(text)
    if missing:
        name = missing.group(1)
        raise LenientSyntaxError(
            f"{name}(...) is a call without its '@' (CTP writes it as text; write "
            f"@{name}(...), or \\( for a literal parenthesis)"
        )


def _check(script: str, found: list[FnCall], depth: int) -> None:
    if depth > 32:
        raise ScriptSyntaxError("clauses nested deeper than 32 levels")
    text_from = 0
    for column, call in _scan(script):
        _check_text(script[text_from : column - 1])
        text_from = column + call.length
        if call.length == -1:
            raise LenientSyntaxError(
                f"'@' at column {column} does not start a complete function call "
                "(write \\@ for a literal @)"
            )
        name = call.name
        if name == "call":
            raise ScriptSyntaxError(
                "@call() runs a CTP plugin (Java code), which this gateway cannot run"
            )
        if name not in FUNCTIONS and name not in OUTCOMES:
            raise LenientSyntaxError(f"unknown function @{name}()")
        clauses = _CLAUSE_COUNT.get(name, 0)
        if not call.complete:
            raise ScriptSyntaxError(
                f"@{name}() needs {clauses} {{...}} clause{'s' if clauses > 1 else ''}"
            )
        needed = _MIN_ARGS.get(name, 0)
        if len(call.args) < needed:
            raise ScriptSyntaxError(
                f"@{name}() needs at least {needed} argument{'s' if needed > 1 else ''}"
            )
        found.append(call)
        for clause in (call.true_code, call.false_code):
            if clause:
                _check(clause, found, depth + 1)
    _check_text(script[text_from:])
