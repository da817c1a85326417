"""One reader for every YAML file the gateway reads: configuration, profiles, pixel rules and
the pixel allow list.

PyYAML keeps the last of two equal keys without a word, so a second `overrides:` block would
silently replace the first and could weaken a profile; here a key twice in one mapping, at any
depth, is an error. Every problem, in whichever file, is one line
`FILE: 'key.path': reason (value)` (after Radicale's messages), and a file's problems are
reported together so a sysadmin fixes the whole file in one pass.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "YamlFileError",
    "problem",
    "problem_lines",
    "read_mapping",
    "read_yaml",
    "show",
    "validate",
    "validate_partly",
    "value_error",
]

SHOW_MAX = 60
FILE_KEY = "(file)"  # the key a problem with the file itself is reported under
YAML_KEY = "(yaml)"  # ... and a problem with its YAML
_CUSTOM = "gateway_"  # prefix of the pydantic error types `value_error` makes

Model = TypeVar("Model", bound=BaseModel)


class YamlFileError(ValueError):
    """Every problem found in one file, one `FILE: 'key.path': reason` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: list[str] = list(problems)


def problem(shown: str, key: str, reason: str) -> str:
    """One problem line; `shown` is the file as the user named it."""
    return f"{shown}: '{key}': {reason}"


def show(value: object) -> str:
    """Render a raw YAML value the way the user wrote it, shortened, for a problem line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value.isprintable() and "'" not in value:
        text = f"'{value}'"  # as YAML would quote it: no doubled backslashes
    else:
        text = repr(value)
    return text if len(text) <= SHOW_MAX else text[: SHOW_MAX - 3] + "..."


def value_error(kind: str, reason: str, key: str | None = None) -> PydanticCustomError:
    """A validation error whose message is already the final, human reason.

    `key`, when given, names the sub-key the problem belongs to (for a check raised at the
    level of the enclosing mapping, or for one item of a list).
    """
    # The reason goes through ctx so that braces in user values are never template fields.
    ctx = {"reason": reason} if key is None else {"reason": reason, "key": key}
    return PydanticCustomError(f"{_CUSTOM}{kind}", "{reason}", ctx)


# --- reading ---------------------------------------------------------------------------


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem_text = getattr(exc, "problem", None) or str(exc)
    return " ".join(f"{_where(getattr(exc, 'problem_mark', None))}{problem_text}".split())


def _duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node) -> list[str]:
    """`line L, column C: duplicate key 'a.b'` for each key met twice in one mapping.

    Checked on the composed nodes, before anything is built, so that the dotted path of a
    nested key is known. `<<` merge keys are left alone: overriding merged keys is their point.
    """
    found: list[tuple[int, int, str]] = []
    visited: set[int] = set()  # an alias reuses a node (and may point back up)
    pending: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, str(i))) for i, item in enumerate(node.value))
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                pending.append((value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):  # unhashable: PyYAML refuses it
                continue
            key = loader.construct_object(key_node)
            dotted = (*path, str(key))
            if key in seen:
                mark = key_node.start_mark
                why = f"{_where(mark)}duplicate key {show('.'.join(dotted))}"
                found.append((mark.line, mark.column, why))
            seen.add(key)
            pending.append((value_node, dotted))
    return [why for _line, _column, why in sorted(found)]


def read_yaml(path: str | os.PathLike[str], shown: str | None = None) -> Any:
    """The parsed content of a YAML file (None when it is empty), with unique keys.

    Raises `YamlFileError`: the file cannot be read, is not YAML, or repeats a key.
    """
    shown = os.fspath(path) if shown is None else shown

    def fail(key: str, *reasons: str) -> YamlFileError:
        return YamlFileError([problem(shown, key, reason) for reason in reasons])

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail(FILE_KEY, f"file not found: {os.path.abspath(path)}") from None
    except IsADirectoryError:
        raise fail(FILE_KEY, "is a folder, not a file") from None
    except PermissionError:
        raise fail(FILE_KEY, "cannot read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise fail(FILE_KEY, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise fail(FILE_KEY, f"cannot read ({exc.strerror or exc})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(loader, node)
        if duplicates:
            raise fail(YAML_KEY, *duplicates)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise fail(YAML_KEY, _yaml_problem(exc)) from None
    finally:
        loader.dispose()


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def read_mapping(
    path: str | os.PathLike[str], shown: str | None = None, *, empty_ok: bool = False
) -> dict[Any, Any]:
    """`read_yaml` for a file whose top level is a mapping of settings.

    With `empty_ok`, an empty file is an empty mapping (every setting at its default).
    """
    shown = os.fspath(path) if shown is None else shown
    data = read_yaml(path, shown)
    if data is None and empty_ok:
        return {}
    if data is None:
        reason = "the file is empty; expected a mapping of settings"
        raise YamlFileError([problem(shown, YAML_KEY, reason)])
    if not isinstance(data, dict):
        reason = f"the top level is {_kind_of(data)}; expected a mapping of settings"
        raise YamlFileError([problem(shown, YAML_KEY, reason)])
    return data


# --- validating ------------------------------------------------------------------------

_TYPE_REASONS: dict[str, str] = {
    "int_type": "is not an integer",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not a string",
    "path_type": "is not a path",
    "list_type": "is not a list",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
    "dict_type": "is not a mapping",
}

_BOUND_REASONS: dict[str, tuple[str, str]] = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}

_UNKNOWN = ("extra_forbidden", "invalid_key")  # a key no field has; a key that is not text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Section | None`, `list[Item]`, `Annotated[...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _expected_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the mapping holding `loc`'s last key accepts."""
    current = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a list index or a free mapping's key: the item's model comes next
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        current = inner
    return [field.alias or name for name, field in current.model_fields.items()]


def _reason(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    """One short human reason for one pydantic error, with the raw value where it helps."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind.startswith(_CUSTOM):
        return str(ctx.get("reason", error["msg"]))
    if kind == "missing":
        return "missing (required)"
    if kind in _UNKNOWN:
        expected = _expected_keys(model, error["loc"]) if model is not None else []
        return f"unknown key (expected one of {', '.join(expected)})" if expected else "unknown key"
    if kind in _TYPE_REASONS:
        reason = f"{show(value)} {_TYPE_REASONS[kind]}"
        if kind == "string_type" and isinstance(value, int | float | dt.date):
            reason += " (put it in quotes)"
        return reason
    if kind in _BOUND_REASONS:
        bound, words = _BOUND_REASONS[kind]
        return f"{show(value)} {words} {ctx.get(bound)}"
    return f"{show(value)}: {error['msg']}"


def _key(error: ErrorDetails) -> str:
    # A mapping's key that failed its own check is located at (..., key, '[key]').
    loc = [part for part in error["loc"] if part != "[key]"]
    sub_key = (error.get("ctx") or {}).get("key")
    if sub_key is not None:
        loc.append(sub_key)
    return ".".join(str(part) for part in loc) or "(top level)"


def _unknown_keys_first(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Within each mapping, unknown keys before the problems with known ones (a misspelt
    key often explains a "missing" after it); otherwise the order of the fields."""
    first: dict[tuple[int | str, ...], int] = {}
    for index, error in enumerate(errors):
        loc = tuple(error["loc"])
        for depth in range(1, len(loc) + 1):
            first.setdefault(loc[:depth], index)

    def order(error: ErrorDetails) -> list[tuple[int, int]]:
        loc = tuple(error["loc"])
        last = len(loc) if error["type"] in _UNKNOWN else -1
        return [(0 if depth == last else 1, first[loc[:depth]]) for depth in range(1, len(loc) + 1)]

    return sorted(errors, key=order)


def problem_lines(
    error: ValidationError,
    shown: str,
    *,
    model: type[BaseModel] | None = None,
    unknown_first: bool = False,
) -> list[str]:
    """pydantic's errors as `FILE: 'key.path': reason` lines.

    With `model`, an unknown key's line lists the keys its mapping accepts; with
    `unknown_first`, unknown keys come first in each mapping (else in pydantic's order:
    fields, then unknown keys).
    """
    errors = error.errors()
    if unknown_first:
        errors = _unknown_keys_first(errors)
    return [problem(shown, _key(item), _reason(item, model)) for item in errors]


def validate_partly(
    model: type[Model],
    data: Any,
    shown: str,
    *,
    context: dict[str, Any] | None = None,
    list_expected: bool = False,
    unknown_first: bool = False,
) -> tuple[Model | None, list[str]]:
    """`data` validated against `model`, and the problem lines.

    With problems, the model is rebuilt from the top-level keys that had none (the others
    at their defaults), so a loader can go on checking what depends on them and report the
    whole file at once; None when even that fails (a required key is missing).
    """
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        named = model if list_expected else None
        problems = problem_lines(exc, shown, model=named, unknown_first=unknown_first)
        failed = {item["loc"][0] for item in exc.errors() if item["loc"]}
    if not isinstance(data, dict):
        return None, problems
    try:
        kept = {key: value for key, value in data.items() if key not in failed}
        return model.model_validate(kept, context=context), problems
    except ValidationError:
        return None, problems


def validate(
    model: type[Model],
    data: Any,
    shown: str,
    *,
    context: dict[str, Any] | None = None,
    list_expected: bool = False,
    unknown_first: bool = False,
) -> Model:
    """`data` validated against `model`; raises `YamlFileError` with every problem."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        named = model if list_expected else None
        raise YamlFileError(
            problem_lines(exc, shown, model=named, unknown_first=unknown_first)
        ) from None
