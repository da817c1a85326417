"""Which instances get pixel cleaning, and fixed boxes known to hold burned-in text.

OCR misses text (stylised fonts, text over speckle), so sites that know where a device burns
in the patient's name add a rule with a fixed box, in the manner of CTP's DicomPixelAnonymizer
scripts. The configuration (`conf/pixel_rules.yaml`) is checked whole at start-up and fails
closed: an unknown key or value is an error naming the file and the dotted key, never a
warning and a skipped line (STYLE.md, "detect apart from clean").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from pydicom.dataset import Dataset

from gateway.base.yaml_files import (
    FILE_KEY,
    YamlFileError,
    problem,
    read_mapping,
    show,
    validate_partly,
    value_error,
)
from gateway.pixels.ocr import MODES, AllowList, AllowListError
from gateway.pixels.regions import Box

__all__ = [
    "DEFAULT_MODALITIES",
    "ENCODINGS",
    "OVERLAY_ACTIONS",
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "PixelConfig",
    "PixelConfigError",
    "Rule",
    "Selection",
    "load_pixel_config",
]

# Modalities whose devices often burn the patient into the picture: ultrasound, angiography
# and fluoroscopy, endoscopy, fundus and other photographs, microscopy, dental panoramic and
# intraoral X-rays, screen captures and scanned documents.
DEFAULT_MODALITIES: frozenset[str] = frozenset(
    {"US", "XA", "RF", "ES", "OP", "XC", "GM", "PX", "IO", "OT", "DOC"}
)
# PS3.4 B.5: Secondary Capture Image Storage (.7) and the multi-frame SC classes (.7.1 single
# bit, .7.2 grayscale byte, .7.3 grayscale word, .7.4 true colour). Screenshots of anything.
SECONDARY_CAPTURE_SOP_CLASSES: tuple[str, ...] = ("1.2.840.10008.5.1.4.1.1.7",)
ENCODINGS: tuple[str, ...] = ("uncompressed", "rle", "jpeg-ls")
OVERLAY_ACTIONS: tuple[str, ...] = ("remove", "clean")
DEFAULT_ALLOWLIST = "pixel_allowlist.yaml"
# The shipped allow list, used when no configuration file is given (a source checkout).
SHIPPED_ALLOWLIST = Path(__file__).resolve().parents[2] / "conf" / DEFAULT_ALLOWLIST

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class PixelConfigError(YamlFileError):
    """Every problem in a pixel configuration, one line each: `FILE: 'key.path': reason`."""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _uid_under(uid: str, roots: tuple[str, ...]) -> bool:
    """True when `uid` is a root or lies below one by whole components: .7 covers .7.4
    but not .77 (VL images)."""
    return any(uid == root or uid.startswith(root + ".") for root in roots)


@dataclass(frozen=True)
class Selection:
    """Which instances get pixel cleaning: every instance with pixel data (`everything`, the
    default when no selection is written), or those any one written criterion selects.

    Writing a selection narrows "everything" to the instances a site knows carry text (the
    shipped pixel_rules.yaml: DEFAULT_MODALITIES, SC, BurnedInAnnotation YES), and `screen`
    lets the others in when a cheap look finds type drawn on them. Among the criteria, each
    widens: a manufacturer or model pattern adds instances (a CT console that burns in
    names), it does not exempt the listed modalities.
    """

    modalities: frozenset[str] = DEFAULT_MODALITIES
    sop_class_prefixes: tuple[str, ...] = SECONDARY_CAPTURE_SOP_CLASSES
    burned_in_annotation_yes: bool = True
    manufacturers: tuple[re.Pattern[str], ...] = ()
    models: tuple[re.Pattern[str], ...] = ()
    everything: bool = False
    # An instance none of the criteria selects is screened for lines drawn in one stored
    # value (drawn_lines.py) and cleaned like a selected one when it holds any.
    screen: bool = True

    def selects(self, ds: Dataset) -> bool:
        """True when `ds` must have its pixels cleaned."""
        if self.everything:
            return True
        if _text(ds, "Modality").upper() in self.modalities:
            return True
        if _uid_under(_text(ds, "SOPClassUID"), self.sop_class_prefixes):
            return True
        # PS3.3 C.7.6.1.1.3 Burned In Annotation: "YES" says the pixels identify the patient.
        if self.burned_in_annotation_yes and _text(ds, "BurnedInAnnotation").upper() == "YES":
            return True
        manufacturer = _text(ds, "Manufacturer")
        if any(p.search(manufacturer) for p in self.manufacturers):
            return True
        model = _text(ds, "ManufacturerModelName")
        return any(p.search(model) for p in self.models)


@dataclass(frozen=True)
class Rule:
    """A fixed box (or several) blanked on every frame of matching instances.

    Box coordinates are x0, y0, x1, y1 with x1/y1 exclusive. A negative x0/y0 counts from
    the right/bottom edge; an x1/y1 of zero or less does too (0 is the edge), so
    `[0, 0, 0, 60]` is the full-width top 60 rows of any image size.
    """

    name: str
    conditions: dict[str, Any] = field(default_factory=dict)
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    enabled: bool = True

    def matches(self, ds: Dataset) -> bool:
        """True when the rule is enabled and every condition holds for `ds`."""
        if not self.enabled:
            return False
        for key, wanted in self.conditions.items():
            if key in ("Manufacturer", "ManufacturerModelName"):
                if not wanted.search(_text(ds, key)):
                    return False
            elif key in ("Rows", "Columns"):
                if ds.get(key) is None or int(ds.get(key)) not in wanted:
                    return False
            elif key == "Modality":
                if _text(ds, key).upper() not in wanted:
                    return False
            elif key == "SOPClassUID" and not _uid_under(_text(ds, key), wanted):
                return False
        return True

    def boxes_for(self, ds: Dataset) -> list[Box]:
        """The rule's boxes resolved against this image's size, for all frames."""
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        out: list[Box] = []
        for x0, y0, x1, y1 in self.boxes:
            ax0 = _clip(x0 + cols if x0 < 0 else x0, cols)
            ay0 = _clip(y0 + rows if y0 < 0 else y0, rows)
            ax1 = max(ax0, _clip(x1 + cols if x1 <= 0 else x1, cols))
            ay1 = max(ay0, _clip(y1 + rows if y1 <= 0 else y1, rows))
            box = Box(ax0, ay0, ax1, ay1, "rule")
            if box.area() > 0:
                out.append(box)
        return out


def _clip(value: int, limit: int) -> int:
    return min(max(value, 0), limit)


@dataclass
class PixelConfig:
    """The pixel stage's settings, validated; see conf/pixel_rules.yaml for each key."""

    selection: Selection = field(default_factory=lambda: Selection(everything=True))
    mode: str = "redact_all_text"
    us_outside_regions: bool = False
    overlays: str = "remove"
    encoding: str = "uncompressed"
    allowlist: Path | None = None
    rules: list[Rule] = field(default_factory=list)
    _allow: AllowList = field(default_factory=AllowList, repr=False)

    def allow_list(self) -> AllowList:
        """The allow list, loaded with the configuration (checked at start-up)."""
        return self._allow


# --- the file's schema ----------------------------------------------------------------


def _choice(choices: tuple[str, ...]) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, str) or value not in choices:
            raise value_error("choice", f"{show(value)} is not one of {', '.join(choices)}")
        return value

    return check


def _strings(value: object) -> list[str]:
    """A string or a list of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise value_error("strings", f"{show(value)} is not a string or a list of strings")
    return [i.strip() for i in items]


def _upper_strings(value: object) -> list[str]:
    return [text.upper() for text in _strings(value)]


def _pattern(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise value_error("regex", f"{show(value)} is not a string (a regular expression)")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise value_error("regex", f"{show(value)} is not a regular expression ({exc})") from None


def _uid(value: str) -> str:
    if not _UID.fullmatch(value):
        raise value_error("uid", f"{show(value)} is not a UID")
    return value


def _positive_integers(value: object) -> object:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in items):
        raise value_error("integers", f"{show(value)} is not a positive integer or a list of them")
    return items


def _box(value: object) -> object:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise value_error("box", f"{show(value)} is not [x0, y0, x1, y1] (four integers)")
    x0, y0, x1, y1 = value
    # Where both ends count from the same edge the box's size is known now; check it.
    for low, high, axis in ((x0, x1, "x"), (y0, y1, "y")):
        same_edge = (low >= 0 and high > 0) or (low < 0 and high <= 0)
        if same_edge and high <= low:
            why = f"{show(value)} is empty ({axis}1 must be greater than {axis}0)"
            raise value_error("box_empty", why)
    return value


def _boxes(value: object) -> object:
    if not isinstance(value, list) or not value:
        raise value_error("boxes", f"{show(value)} is not a non-empty list of boxes")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise value_error("name", "missing (required: a short name for the audit record)")
    return value.strip()


def _path_text(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise value_error("path", f"{show(value)} is not a path")
    return value


Texts = Annotated[frozenset[str], BeforeValidator(_upper_strings)]
Pattern = Annotated[re.Pattern[str], BeforeValidator(_pattern)]
Patterns = Annotated[tuple[Pattern, ...], BeforeValidator(_strings)]
Uids = Annotated[tuple[Annotated[str, AfterValidator(_uid)], ...], BeforeValidator(_strings)]
Sizes = Annotated[frozenset[int], BeforeValidator(_positive_integers)]
BoxList = list[Annotated[tuple[int, int, int, int], BeforeValidator(_box)]]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SelectionFile(_Schema):
    modalities: Texts = DEFAULT_MODALITIES
    sop_classes: Uids = SECONDARY_CAPTURE_SOP_CLASSES
    burned_in_annotation: StrictBool = True
    manufacturers: Patterns = ()
    models: Patterns = ()
    screen: StrictBool = True


class _ConditionsFile(_Schema):
    """Only the conditions written apply (`model_fields_set`); a written null is a mistake,
    so the defaults are not of the fields' types and never validated."""

    Modality: Texts = Field(None)
    Manufacturer: Pattern = Field(None)
    ManufacturerModelName: Pattern = Field(None)
    Rows: Sizes = Field(None)
    Columns: Sizes = Field(None)
    SOPClassUID: Uids = Field(None)


class _RuleFile(_Schema):
    name: Annotated[str, BeforeValidator(_name)] = Field(None, validate_default=True)
    enabled: StrictBool = True
    conditions: _ConditionsFile | None = None
    boxes: Annotated[BoxList, BeforeValidator(_boxes)] = Field(None, validate_default=True)

    def rule(self) -> Rule:
        written = self.conditions.model_fields_set if self.conditions is not None else set()
        names = [name for name in _ConditionsFile.model_fields if name in written]
        conditions = {name: getattr(self.conditions, name) for name in names}
        return Rule(self.name, conditions, tuple(self.boxes), self.enabled)


class _PixelRulesFile(_Schema):
    """conf/pixel_rules.yaml; the order of the fields is the order problems are reported in."""

    selection: _SelectionFile | None = None
    mode: Annotated[str, BeforeValidator(_choice(MODES))] = "redact_all_text"
    us_outside_regions: StrictBool = False
    overlays: Annotated[str, BeforeValidator(_choice(OVERLAY_ACTIONS))] = "remove"
    encoding: Annotated[str, BeforeValidator(_choice(ENCODINGS))] = "uncompressed"
    allowlist: Annotated[str, BeforeValidator(_path_text)] = DEFAULT_ALLOWLIST
    rules: list[_RuleFile] | None = None

    def pixel_config(self) -> PixelConfig:
        chosen = self.selection
        selection = (
            Selection(everything=True)
            if chosen is None
            else Selection(
                chosen.modalities,
                chosen.sop_classes,
                chosen.burned_in_annotation,
                chosen.manufacturers,
                chosen.models,
                screen=chosen.screen,
            )
        )
        rules = [rule.rule() for rule in self.rules or []]
        return PixelConfig(
            selection, self.mode, self.us_outside_regions, self.overlays, self.encoding,
            rules=rules,
        )


# --- loading ---------------------------------------------------------------------------


def load_pixel_config(path: str | os.PathLike[str] | None) -> PixelConfig:
    """Load and check `conf/pixel_rules.yaml`; None gives the defaults (every instance with
    pixel data is selected) with the shipped allow list, or an empty one where it is not
    installed (every word is then blanked in redact_all_text mode: fail closed).

    Raises PixelConfigError listing every problem, each `FILE: 'dotted.key': reason`; the
    allow list's problems are included.
    """
    if path is None:
        if not SHIPPED_ALLOWLIST.is_file():
            return PixelConfig()
        try:
            allow = AllowList.from_file(SHIPPED_ALLOWLIST)
        except AllowListError as exc:
            raise PixelConfigError(exc.problems) from None
        return PixelConfig(allowlist=SHIPPED_ALLOWLIST, _allow=allow)
    shown = os.fspath(path)
    try:
        data = read_mapping(path, shown, empty_ok=True)
    except YamlFileError as exc:
        raise PixelConfigError(exc.problems) from None
    parsed, problems = validate_partly(
        _PixelRulesFile, data, shown, list_expected=True, unknown_first=True
    )
    if parsed is None:
        raise PixelConfigError(problems)
    config = parsed.pixel_config()
    # The allow list is read even when the rules have problems, to report both files at once;
    # not when `allowlist` itself is wrong (the rebuilt model has the default there).
    if "allowlist" in parsed.model_fields_set or "allowlist" not in data:
        base = Path(os.path.abspath(shown)).parent
        config.allowlist = Path(os.path.normpath(base / Path(parsed.allowlist).expanduser()))
        problems.extend(_allow_list(config, shown))
    if problems:
        raise PixelConfigError(problems)
    return config


def _allow_list(config: PixelConfig, shown: str) -> list[str]:
    """Load the allow list into `config`; its problems, under its own file name."""
    assert config.allowlist is not None
    if not config.allowlist.exists():
        reason = f"cannot read (not found; {shown} names it under 'allowlist')"
        return [problem(str(config.allowlist), FILE_KEY, reason)]
    try:
        config._allow = AllowList.from_file(config.allowlist)
    except AllowListError as exc:
        return exc.problems
    return []
