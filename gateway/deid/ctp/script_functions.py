"""The functions of CTP's script language, one handler each (see evaluate.py).

Each handler takes the parsed call, the context and the element's tag, and returns the text
CTP's function of the same name returns, including CTP's fallbacks when it fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.deid.ctp import arithmetic as fx
from gateway.deid.ctp.element_walk import process_elements
from gateway.deid.ctp.evaluate import (
    EMPTY,
    KEEP,
    REMOVE,
    Context,
    CtpQuarantine,
    CtpSkip,
    element_text,
    java_null,
    java_trim,
    make_replacement,
    vr_at,
)
from gateway.deid.ctp.lookup_table import lookup
from gateway.deid.ctp.syntax import FnCall

Handler = Callable[[FnCall, Context, int], "str | None"]


def _contents(fn: FnCall, ctx: Context, tag: int) -> str | None:
    value = ctx.contents(fn.args[0], tag)
    if len(fn.args) == 1:
        return value
    if len(fn.args) == 2:
        return fx.java_replace_all(value, fn.arg(1), "")
    if len(fn.args) == 3:
        return fx.java_replace_all(value, fn.arg(1), fn.arg(2))
    return ""


def _value(fn: FnCall, ctx: Context, tag: int) -> str:
    value = ctx.contents(fn.args[0], tag)
    return value if value != "" else (fn.arg(1) if len(fn.args) > 1 else "")


def _truncate(fn: FnCall, ctx: Context, tag: int) -> str:
    value = ctx.contents(fn.args[0], tag)
    if len(fn.args) == 1:
        return value
    try:
        n = fx.java_int(fn.args[1])
    except ValueError:
        return value
    if n >= 0:
        return value[: min(len(value), n)]
    value = java_trim(value)
    return value[max(0, len(value) + n) :]


def _failsafe(default: Callable[[FnCall], str]) -> Callable[[Handler], Handler]:
    """CTP's try/catch: a function that fails returns `default(fn)` instead of a value."""

    def wrap(func: Handler) -> Handler:
        def run(fn: FnCall, ctx: Context, tag: int) -> str | None:
            try:
                return func(fn, ctx, tag)
            except (CtpQuarantine, CtpSkip):
                if func.__name__ in _CATCHES_ALL:
                    return default(fn)
                raise
            except Exception:  # CTP's catch (Exception e) around these functions
                return default(fn)

        run.__name__ = func.__name__
        return run

    return wrap


# @hashuid's catch also swallows a quarantine raised by the script it appends.
_CATCHES_ALL = frozenset({"_hashuid"})


def _args_text(fn: FnCall) -> str:
    return fn.args_text()


def _empty_date(_fn: FnCall) -> str:
    return EMPTY


def _java_int_or(text: str | None, default: int) -> int:
    try:
        return fx.java_int(text)
    except ValueError:
        return default


@_failsafe(_args_text)
def _hash(fn: FnCall, ctx: Context, tag: int) -> str:
    value = ctx.contents_null(fn.args[0], tag)
    if value is None:
        return REMOVE
    length = fx.INT_MAX
    if len(fn.args) > 1:
        text = ctx.param(fn.args[1])
        if text is None:
            raise ValueError("undefined parameter")
        if text != "":
            length = _java_int_or(text, fx.INT_MAX)
    return fx.ctp_hash(value, length)


@_failsafe(_args_text)
def _hashname(fn: FnCall, ctx: Context, tag: int) -> str:
    text = ctx.contents(fn.args[0], tag)
    length = _java_int_or(ctx.param(fn.args[1]), 4)
    words = _java_int_or(ctx.param(fn.args[2]), fx.INT_MAX) if len(fn.args) > 2 else fx.INT_MAX
    return fx.hash_name(text, length, words)


@_failsafe(_args_text)
def _hashptid(fn: FnCall, ctx: Context, tag: int) -> str:
    if len(fn.args) < 2:
        return fn.args_text()
    site = ctx.param(fn.args[0])
    ptid = ctx.contents(fn.args[1], tag)
    maxlen = _java_int_or(ctx.param(fn.args[2]), fx.INT_MAX) if len(fn.args) >= 3 else fx.INT_MAX
    return fx.hash_ptid(site, ptid, maxlen)


@_failsafe(_args_text)
def _hashuid(fn: FnCall, ctx: Context, tag: int) -> str:
    if len(fn.args) < 2:
        return fn.args_text()
    prefix = ctx.param(fn.args[0])
    uid = ctx.contents_null(fn.args[1], tag)
    if uid is None:
        return REMOVE
    if prefix is None:
        raise ValueError("undefined prefix parameter")
    if not prefix.endswith("."):
        prefix += "."
    if len(fn.args) > 2:
        arg_tag = ctx.element_tag(fn.args[2])
        arg_script = ctx.scripts.get(arg_tag)
        if arg_script is not None:
            uid += make_replacement(arg_script, ctx, arg_tag)
    return fx.hash_uid(prefix, uid)


def _dates(date: str, change: Callable[[str], str]) -> str:
    return "\\".join(change(d) for d in fx.java_split(date, r"\\"))


@_failsafe(_empty_date)
def _hashdate(fn: FnCall, ctx: Context, tag: int) -> str:
    date = ctx.contents_null(fn.args[0], tag)
    if date is None:
        return REMOVE
    if len(date) < 8:
        return EMPTY
    unhashed = ctx.contents_null(fn.args[1], tag)
    if unhashed is None:
        return REMOVE
    inc = fx.hashdate_increment(unhashed)
    return _dates(date, lambda d: fx.increment_date(d, inc))


@_failsafe(_empty_date)
def _incrementdate(fn: FnCall, ctx: Context, tag: int) -> str:
    date = ctx.contents_null(fn.args[0], tag)
    if date is None:
        return REMOVE
    if len(date) < 8:
        return EMPTY
    if len(fn.args) == 2:
        inc_text = ctx.param(fn.args[1])
    elif len(fn.args) == 3:
        key = ctx.contents_null(fn.args[1], tag)
        key_type = ctx.param(fn.args[2]) or ""
        inc_text = lookup(ctx.lookup_table, key_type, key)
    else:
        raise ValueError("unknown calling sequence")
    inc = fx.java_long(inc_text)
    return _dates(date, lambda d: fx.increment_date(d, inc))


@_failsafe(_empty_date)
def _modifydate(fn: FnCall, ctx: Context, tag: int) -> str:
    date = ctx.contents_null(fn.args[0], tag)
    if date is None:
        return REMOVE
    if len(date) < 8:
        return EMPTY
    y, m, d = (_java_int_or(java_trim(_required(ctx.param(a))), -1) for a in fn.args[1:4])
    return _dates(date, lambda text: fx.modify_date(text, y, m, d))


def _required(value: str | None) -> str:
    if value is None:
        raise ValueError("undefined parameter")
    return value


@_failsafe(_args_text)
def _round(fn: FnCall, ctx: Context, tag: int) -> str:
    age = ctx.contents(fn.args[0], tag)
    return fx.round_age(age, fx.java_int(ctx.param(fn.args[1])))


@_failsafe(_args_text)
def _encrypt(fn: FnCall, ctx: Context, tag: int) -> str:
    if len(fn.args) < 2:
        return fn.args_text()
    return fx.encrypt(ctx.contents(fn.args[0], tag), ctx.param(fn.args[1]))


@_failsafe(_args_text)
def _decrypt(fn: FnCall, ctx: Context, tag: int) -> str:
    if len(fn.args) < 2:
        return fn.args_text()
    return fx.decrypt(ctx.contents(fn.args[0], tag), ctx.param(fn.args[1]))


def _initials(fn: FnCall, ctx: Context, tag: int) -> str:
    text = fx.initials(ctx.contents(fn.args[0], tag))
    if len(fn.args) > 1:
        text = fx.caesar(text, _java_int_or(java_trim(fn.args[1]), 0))
    return text


def _pathelement(fn: FnCall, ctx: Context, tag: int) -> str:
    text = ctx.contents(fn.args[0], tag)
    index = _java_int_or(fn.args[1] if len(fn.args) > 1 else None, 1000)
    parts = fx.java_split(text, "/")
    if index < 0:
        index += len(parts)
    return parts[index] if 0 <= index < len(parts) else text


def _lookup(fn: FnCall, ctx: Context, tag: int) -> str:
    key = ""
    try:
        key = "|".join(ctx.contents(n.strip(), tag) for n in fx.java_split(fn.args[0], r"\|"))
        key = key.replace("\\", "")
        if len(fn.args) > 2 and fn.args[2] == "UC":
            key = key.upper()
        return lookup(ctx.lookup_table, fn.args[1], key)
    except Exception as exc:
        if len(fn.args) > 2:
            action = fn.arg(2).strip()
            if action in ("keep", "remove", "empty"):
                return f"@{action}()"
            if len(fn.args) > 3:
                if action == "default":
                    return fn.arg(3).strip()
                if action == "ignore" and re.fullmatch(fn.arg(3), key):
                    return key
        raise CtpQuarantine("@lookup(): key not in the lookup table") from exc


def _dateinterval(fn: FnCall, ctx: Context, tag: int) -> str:
    try:
        if len(fn.args) > 2:
            date = ctx.contents(fn.args[0].strip(), tag)
            key = ctx.contents(fn.args[2].strip(), tag, ctx.root())
            base = lookup(ctx.lookup_table, fn.args[1], key).strip()
            days = fx.days_between(date[:8], base)
            if len(fn.args) == 3:
                return str(days)
            return fx.increment_date(_required(ctx.param(fn.args[3])), days)
    except Exception as exc:
        raise CtpQuarantine("@dateinterval() failed") from exc
    raise CtpQuarantine("@dateinterval() needs 3 or 4 arguments")


def _integer(fn: FnCall, ctx: Context, tag: int) -> str:
    text = ctx.contents(fn.args[0], tag)
    width = _java_int_or(fn.args[2], 0) if len(fn.args) > 2 else 0
    return ctx.integers.get(fn.args[1], text, width)


def _require(fn: FnCall, ctx: Context, tag: int) -> str:
    if tag in ctx.in_ds:
        return KEEP
    if not fn.args:
        return ""
    source = ctx.element_tag(fn.args[0]) if fn.args[0].strip() not in ("", "this") else tag
    if source in ctx.in_ds:
        value = ctx.contents_tag(source)
        if value is None:
            raise ValueError("@require(): unreadable element")
    else:
        value = fn.arg(1) if len(fn.args) > 1 else ""
    return f"@blank({len(value)})" if java_trim(value) == "" else value


def _if(fn: FnCall, ctx: Context, tag: int) -> str:
    chosen = fn.true_code if _condition(fn, ctx, tag) else fn.false_code
    return make_replacement(chosen, ctx, tag)


def _cond_arg(fn: FnCall, ctx: Context, index: int) -> str:
    arg = fn.arg(index)
    if arg.startswith("@"):
        param = ctx.param(arg)
        if param is not None:
            return param
    return arg


def _condition(fn: FnCall, ctx: Context, this_tag: int) -> bool:
    if len(fn.args) < 2:
        return False
    name = fn.arg(0)
    tag = this_tag if name in ("", "this") else ctx.element_tag(name)
    element = ctx.contents(name, tag)
    test = fn.args[1]
    if test == "isblank":
        return java_trim(element) == ""
    if test == "exists":
        return tag in ctx.in_ds
    if len(fn.args) < 3:
        return False
    other = _cond_arg(fn, ctx, 2)
    if test == "contains":
        return other.lower() in element.lower()
    if test == "equals":
        return element.lower() == other.lower()
    if test == "matches":
        return re.fullmatch(java_trim(other), element) is not None
    if test == "greaterthan":
        return _java_int_or(re.sub("[^0-9]", "", element), 0) > _java_int_or(
            re.sub("[^0-9]", "", other), 0
        )
    return False


def _select(fn: FnCall, ctx: Context, tag: int) -> str:
    return make_replacement(fn.true_code if ctx.is_root() else fn.false_code, ctx, tag)


def _append(fn: FnCall, ctx: Context, tag: int) -> str:
    value = make_replacement(fn.true_code, ctx, tag)
    if tag not in ctx.in_ds or element_text(ctx.in_ds, tag) in (None, ""):
        return value
    return java_null(ctx.contents_tag(tag)) + "\\" + value


def _process(fn: FnCall, ctx: Context, tag: int) -> str:
    if tag in ctx.in_ds and tag in ctx.out_ds and vr_at(ctx.in_ds, tag) == "SQ":
        for in_item, out_item in zip(ctx.in_ds[tag].value, ctx.out_ds[tag].value, strict=False):
            ctx.push(in_item, out_item)
            try:
                process_elements(ctx)
            finally:
                ctx.pop()
    return KEEP


def _quarantine(_fn: FnCall, _ctx: Context, _tag: int) -> str:
    raise CtpQuarantine("@quarantine() called")


def _skip(_fn: FnCall, _ctx: Context, _tag: int) -> str:
    raise CtpSkip("@skip() called")


FUNCTIONS: dict[str, Handler] = {
    "contents": _contents,
    "value": _value,
    "truncate": _truncate,
    "date": lambda fn, _c, _t: fx.now_date(fn.arg(0)),
    "time": lambda fn, _c, _t: fx.now_time(fn.arg(0)),
    "param": lambda fn, ctx, _t: ctx.param(fn.args[0] if fn.args else None),
    "encrypt": _encrypt,
    "decrypt": _decrypt,
    "hash": _hash,
    "hashname": _hashname,
    "hashptid": _hashptid,
    "hashuid": _hashuid,
    "hashdate": _hashdate,
    "incrementdate": _incrementdate,
    "modifydate": _modifydate,
    "dateinterval": _dateinterval,
    "round": _round,
    "initials": _initials,
    "lowercase": lambda fn, ctx, t: ctx.contents(fn.args[0], t).lower(),
    "uppercase": lambda fn, ctx, t: ctx.contents(fn.args[0], t).upper(),
    "pathelement": _pathelement,
    "lookup": _lookup,
    "integer": _integer,
    "if": _if,
    "select": _select,
    "append": _append,
    "always": lambda _f, _c, _t: "",
    "require": _require,
    "process": _process,
    "quarantine": _quarantine,
    "skip": _skip,
}
