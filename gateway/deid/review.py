"""The reviewer: every way a profile retains more than the Basic Profile, and who said so.

A site adapts the standard (keeps ages, allows study descriptions, retains its institution
name). Each such change is a weakening of PS3.15's Basic Profile; it is fine when the site
chose it knowingly: either an option of Table E.1-1 the profile selected gives that action
(or one that retains more), or the profile lists the attribute under `acknowledge:`. Any other
weakening makes `profile review` exit 1 and `run`/`anonymize` refuse to start, so a typo or a
copied override never weakens de-identification silently.

Vocabulary ("retains more" order): X removed < Z emptied < D replaced (dummy, fake, hash,
pseudonym, fixed text) = U UID remapped < C cleaned/derived < K kept. A combined code of the
table (X/Z/D, ...) is weakened only when the profile's action retains more than every
alternative. Patient's Name replaced by the site pseudonym (a D where the table says Z) is not
counted: it is the same keyed value the table allows for Patient ID (Z/D) and carries nothing
of the name.

Works on any profile kind through the contract methods (`effective_action`,
`effective_pattern_action`, `path_overrides`, `acknowledged`): YAML and CTP scripts alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword

from gateway.deid.overrides import code_rank
from gateway.deid.standard import (
    CURVE_PATTERN,
    OVERLAY_COMMENTS_PATTERN,
    OVERLAY_DATA_PATTERN,
    PRIVATE_PATTERN,
    TABLE_E1_1_EDITION,
    Option,
    TableRow,
    table_e1_1,
)

# How `acknowledge:` names the pattern rows.
PATTERN_NAMES = {
    PRIVATE_PATTERN: "private",
    CURVE_PATTERN: "curves",
    OVERLAY_DATA_PATTERN: "overlays",
    OVERLAY_COMMENTS_PATTERN: "overlays",
}
_PATIENT_NAME = 0x00100010


@dataclass(frozen=True)
class Weakening:
    """One attribute the profile treats more leniently than the Basic Profile."""

    attribute: str  # keyword, (gggg,eeee), pattern name, or override path
    standard: str  # Basic Profile code
    profile: str  # the profile's code
    option: str  # an option whose column gives this action or more ('' if none)
    chosen: bool  # that option is one the profile selected
    acknowledged: bool  # listed under acknowledge, or justified by a chosen option


@dataclass(frozen=True)
class Review:
    profile: str
    weakenings: tuple[Weakening, ...]

    @property
    def unacknowledged(self) -> tuple[Weakening, ...]:
        return tuple(w for w in self.weakenings if not w.acknowledged)

    @property
    def ok(self) -> bool:
        return not self.unacknowledged

    def table(self) -> str:
        """A fixed-width table, one row per weakening, and a closing verdict."""
        header = ("ATTRIBUTE", "BASIC", "PROFILE", "OPTION THAT WOULD JUSTIFY IT", "ACKNOWLEDGED")
        rows = [
            (
                w.attribute,
                w.standard,
                w.profile,
                (w.option + (" (chosen)" if w.chosen else "")) if w.option else "-",
                "yes" if w.acknowledged else "NO",
            )
            for w in self.weakenings
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            f"profile {self.profile}: {len(self.weakenings)} weakening(s) of the Basic Profile "
            f"(PS3.15 {TABLE_E1_1_EDITION}), {len(self.unacknowledged)} not acknowledged"
        ]
        if rows:
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                      for r in rows]
        lines.append("OK" if self.ok else self.message())
        return "\n".join(lines)

    def message(self) -> str:
        """The refusal `run`, `anonymize` and `check-config` print (empty when ok)."""
        if self.ok:
            return ""
        names = ", ".join(f"{w.attribute} ({w.standard} -> {w.profile})"
                          for w in self.unacknowledged)
        return (
            f"profile {self.profile}: weakens the Basic Profile without acknowledgement: "
            f"{names}; choose the option that justifies it or list it under 'acknowledge:' "
            "(see: dicom-gateway profile review)"
        )


def review(profile: object) -> Review:
    """Every weakening of `profile` (a CompiledProfile, a CTP profile, ...) vs Basic."""
    chosen = frozenset(getattr(profile, "options", frozenset()))
    acknowledged = frozenset(getattr(profile, "acknowledged", frozenset()))
    rows = {row.tag: row for row in table_e1_1() if row.tag is not None}
    found: list[Weakening] = []
    for row in table_e1_1():
        if row.tag is None:
            assert row.pattern is not None
            code = profile.effective_pattern_action(row.pattern)  # type: ignore[attr-defined]
            names = {PATTERN_NAMES[row.pattern]}
            attribute = PATTERN_NAMES[row.pattern]
            if row.pattern.startswith("60xx"):
                attribute = f"overlays ({row.pattern})"
        else:
            code = profile.effective_action(row.tag) or "K"  # type: ignore[attr-defined]
            if row.tag == _PATIENT_NAME and code == "D":
                continue  # the site pseudonym: see the module docstring
            attribute = row.keyword or _tag_text(row.tag)
            names = {attribute, _tag_text(row.tag)}
        weakening = _judge(row, row.basic, code, attribute, names, chosen, acknowledged)
        if weakening is not None:
            found.append(weakening)
    for path, code in profile.path_overrides():  # type: ignore[attr-defined]
        leaf = _leaf_tag(path)
        row = rows.get(leaf) if leaf is not None else None
        if row is None:
            continue  # the table keeps what it does not name: nothing can retain more
        names = {path, row.keyword, _tag_text(row.tag or 0)}
        weakening = _judge(row, row.basic, code, path, names, chosen, acknowledged)
        if weakening is not None:
            found.append(weakening)
    return Review(str(getattr(profile, "name", "")), tuple(found))


def _judge(
    row: TableRow,
    standard: str,
    code: str,
    attribute: str,
    names: set[str],
    chosen: frozenset[Option],
    acknowledged: frozenset[str],
) -> Weakening | None:
    if code_rank(code) <= code_rank(standard):
        return None
    # The tightest option that allows the profile's action: Modified Dates (C) before Full
    # Dates (K) for a shifted date.
    justifying = sorted(
        (opt for opt, col in row.options.items() if code_rank(col) >= code_rank(code)),
        key=lambda opt: code_rank(row.options[opt]),
    )
    picked = next((o for o in justifying if o in chosen), justifying[0] if justifying else None)
    is_chosen = picked is not None and picked in chosen
    return Weakening(
        attribute=attribute,
        standard=standard,
        profile=code,
        option=picked.value if picked is not None else "",
        chosen=is_chosen,
        acknowledged=is_chosen or bool(names & acknowledged),
    )


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _leaf_tag(path: str) -> int | None:
    leaf = path.rsplit("/", 1)[-1].strip()
    if leaf.startswith("("):
        try:
            return int(leaf.strip("()").replace(",", ""), 16)
        except ValueError:
            return None
    if len(leaf) == 8 and all(c in "0123456789abcdefABCDEF" for c in leaf):
        return int(leaf, 16)
    tag = tag_for_keyword(leaf)
    return int(tag) if tag is not None else None
