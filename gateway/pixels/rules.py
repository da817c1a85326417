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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydicom.dataset import Dataset

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

# Modalities whose images routinely carry burned-in patient data: ultrasound, angiography,
# endoscopy, "other" (often screenshots) and scanned documents.
DEFAULT_MODALITIES: frozenset[str] = frozenset({"US", "XA", "ES", "OT", "DOC"})
# PS3.4 B.5: Secondary Capture Image Storage (.7) and the multi-frame SC classes (.7.1 single
# bit, .7.2 grayscale byte, .7.3 grayscale word, .7.4 true colour). Screenshots of anything.
SECONDARY_CAPTURE_SOP_CLASSES: tuple[str, ...] = ("1.2.840.10008.5.1.4.1.1.7",)
ENCODINGS: tuple[str, ...] = ("uncompressed", "rle", "jpeg-ls")
OVERLAY_ACTIONS: tuple[str, ...] = ("remove", "clean")
DEFAULT_ALLOWLIST = "pixel_allowlist.yaml"
# The shipped allow list, used when no configuration file is given (a source checkout).
SHIPPED_ALLOWLIST = Path(__file__).resolve().parents[2] / "conf" / DEFAULT_ALLOWLIST

_TOP_KEYS = (
    "selection",
    "mode",
    "us_outside_regions",
    "overlays",
    "encoding",
    "allowlist",
    "rules",
)
_SELECTION_KEYS = ("modalities", "sop_classes", "burned_in_annotation", "manufacturers", "models")
_RULE_KEYS = ("name", "enabled", "conditions", "boxes")
_CONDITION_KEYS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "Rows",
    "Columns",
    "SOPClassUID",
)
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class PixelConfigError(ValueError):
    """Every problem in a pixel configuration, one line each: `FILE: 'key.path': reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _uid_under(uid: str, roots: tuple[str, ...]) -> bool:
    """True when `uid` is a root or lies below one by whole components: .7 covers .7.4
    but not .77 (VL images)."""
    return any(uid == root or uid.startswith(root + ".") for root in roots)


@dataclass(frozen=True)
class Selection:
    """Which instances get pixel cleaning. Any one criterion selects an instance.

    Criteria widen, never narrow: a manufacturer or model pattern adds instances (a site
    that knows a CT console burns in names), it does not exempt the default modalities.
    """

    modalities: frozenset[str] = DEFAULT_MODALITIES
    sop_class_prefixes: tuple[str, ...] = SECONDARY_CAPTURE_SOP_CLASSES
    burned_in_annotation_yes: bool = True
    manufacturers: tuple[re.Pattern[str], ...] = ()
    models: tuple[re.Pattern[str], ...] = ()

    def selects(self, ds: Dataset) -> bool:
        """True when `ds` must have its pixels cleaned."""
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

    selection: Selection = field(default_factory=Selection)
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


# --- loading ---------------------------------------------------------------------------


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Problems:
    """Collects `FILE: 'key': reason` lines so the whole file is reported in one pass."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.lines: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.lines.append(f"{self.shown}: '{key}': {reason}")

    def unknown_keys(self, data: dict[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                self.add(f"{prefix}{key}", f"unknown key (expected one of {', '.join(allowed)})")

    def choice(self, data: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
        value = data.get(key, default)
        if value not in choices:
            self.add(key, f"{_show(value)} is not one of {', '.join(choices)}")
            return default
        return str(value)

    def boolean(self, data: dict[str, Any], key: str, default: bool, shown_key: str) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.add(shown_key, f"{_show(value)} is not true or false")
            return default
        return value

    def strings(self, value: Any, key: str) -> list[str]:
        """A string or a list of strings."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            self.add(key, f"{_show(value)} is not a string or a list of strings")
            return []
        return [i.strip() for i in items]

    def patterns(self, value: Any, key: str) -> list[re.Pattern[str]]:
        out = []
        for index, text in enumerate(self.strings(value, key)):
            try:
                out.append(re.compile(text, re.IGNORECASE))
            except re.error as exc:
                self.add(f"{key}.{index}", f"{_show(text)} is not a regular expression ({exc})")
        return out

    def uids(self, value: Any, key: str) -> tuple[str, ...]:
        out = []
        for index, uid in enumerate(self.strings(value, key)):
            if not _UID.fullmatch(uid):
                self.add(f"{key}.{index}", f"{_show(uid)} is not a UID")
            else:
                out.append(uid)
        return tuple(out)

    def integers(self, value: Any, key: str) -> frozenset[int]:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in items):
            self.add(key, f"{_show(value)} is not a positive integer or a list of them")
            return frozenset()
        return frozenset(items)


def _selection(data: Any, problems: _Problems) -> Selection:
    if data is None:
        return Selection()
    if not isinstance(data, dict):
        problems.add("selection", f"{_show(data)} is not a mapping")
        return Selection()
    problems.unknown_keys(data, _SELECTION_KEYS, "selection.")
    default = Selection()
    modalities = default.modalities
    if "modalities" in data:
        modalities = frozenset(
            m.upper() for m in problems.strings(data["modalities"], "selection.modalities")
        )
    sop_classes = default.sop_class_prefixes
    if "sop_classes" in data:
        sop_classes = problems.uids(data["sop_classes"], "selection.sop_classes")
    burned = problems.boolean(data, "burned_in_annotation", True, "selection.burned_in_annotation")
    manufacturers = problems.patterns(data.get("manufacturers", []), "selection.manufacturers")
    models = problems.patterns(data.get("models", []), "selection.models")
    return Selection(modalities, sop_classes, burned, tuple(manufacturers), tuple(models))


def _box(value: Any, key: str, problems: _Problems) -> tuple[int, int, int, int] | None:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        problems.add(key, f"{_show(value)} is not [x0, y0, x1, y1] (four integers)")
        return None
    x0, y0, x1, y1 = value
    # Where both ends count from the same edge the box's size is known now; check it.
    for low, high, axis in ((x0, x1, "x"), (y0, y1, "y")):
        same_edge = (low >= 0 and high > 0) or (low < 0 and high <= 0)
        if same_edge and high <= low:
            problems.add(key, f"{_show(value)} is empty ({axis}1 must be greater than {axis}0)")
            return None
    return (x0, y0, x1, y1)


def _conditions(data: Any, key: str, problems: _Problems) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.add(key, f"{_show(data)} is not a mapping")
        return {}
    problems.unknown_keys(data, _CONDITION_KEYS, f"{key}.")
    out: dict[str, Any] = {}
    for name, value in data.items():
        where = f"{key}.{name}"
        if name in ("Manufacturer", "ManufacturerModelName"):
            if not isinstance(value, str):
                problems.add(where, f"{_show(value)} is not a string (a regular expression)")
                continue
            try:
                out[name] = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                problems.add(where, f"{_show(value)} is not a regular expression ({exc})")
        elif name in ("Rows", "Columns"):
            out[name] = problems.integers(value, where)
        elif name == "Modality":
            out[name] = frozenset(m.upper() for m in problems.strings(value, where))
        elif name == "SOPClassUID":
            out[name] = problems.uids(value, where)
    return out


def _rules(data: Any, problems: _Problems) -> list[Rule]:
    if data is None:
        return []
    if not isinstance(data, list):
        problems.add("rules", f"{_show(data)} is not a list")
        return []
    rules: list[Rule] = []
    for index, item in enumerate(data):
        key = f"rules.{index}"
        if not isinstance(item, dict):
            problems.add(key, f"{_show(item)} is not a mapping")
            continue
        problems.unknown_keys(item, _RULE_KEYS, f"{key}.")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{key}.name", "missing (required: a short name for the audit record)")
            name = f"rule {index}"
        enabled = problems.boolean(item, "enabled", True, f"{key}.enabled")
        conditions = _conditions(item.get("conditions"), f"{key}.conditions", problems)
        raw_boxes = item.get("boxes")
        boxes: list[tuple[int, int, int, int]] = []
        if not isinstance(raw_boxes, list) or not raw_boxes:
            problems.add(f"{key}.boxes", f"{_show(raw_boxes)} is not a non-empty list of boxes")
        else:
            for b, raw in enumerate(raw_boxes):
                box = _box(raw, f"{key}.boxes.{b}", problems)
                if box is not None:
                    boxes.append(box)
        rules.append(Rule(name.strip(), conditions, tuple(boxes), enabled))
    return rules


def load_pixel_config(path: str | os.PathLike[str] | None) -> PixelConfig:
    """Load and check `conf/pixel_rules.yaml`; None gives the defaults with the shipped
    allow list, or an empty one where it is not installed (every word is then blanked in
    redact_all_text mode: fail closed).

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
    problems = _Problems(shown)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PixelConfigError([f"{shown}: '(file)': cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = f"{where}{getattr(exc, 'problem', None) or 'not valid YAML'}"
        raise PixelConfigError([f"{shown}: '(yaml)': {reason}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PixelConfigError([f"{shown}: '(top level)': expected a mapping of settings"])
    problems.unknown_keys(data, _TOP_KEYS, "")
    config = PixelConfig(
        selection=_selection(data.get("selection"), problems),
        mode=problems.choice(data, "mode", MODES, "redact_all_text"),
        us_outside_regions=problems.boolean(
            data, "us_outside_regions", False, "us_outside_regions"
        ),
        overlays=problems.choice(data, "overlays", OVERLAY_ACTIONS, "remove"),
        encoding=problems.choice(data, "encoding", ENCODINGS, "uncompressed"),
        rules=_rules(data.get("rules"), problems),
    )
    allowlist = data.get("allowlist", DEFAULT_ALLOWLIST)
    if not isinstance(allowlist, str) or not allowlist.strip():
        problems.add("allowlist", f"{_show(allowlist)} is not a path")
    else:
        base = Path(os.path.abspath(shown)).parent
        config.allowlist = Path(os.path.normpath(base / Path(allowlist).expanduser()))
        try:
            config._allow = AllowList.from_file(config.allowlist)
        except AllowListError as exc:
            problems.lines.extend(exc.problems)
    if problems.lines:
        raise PixelConfigError(problems.lines)
    return config
