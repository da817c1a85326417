"""The tag de-identification engine: one walk of a dataset under a compiled profile.

Every element is looked up once in the profile's tag -> action map; sequences are walked at
any depth with the same table (PS3.15 E.1.1: the actions apply to attributes wherever they
occur, including inside sequence items). Pixel data is never decoded or copied.

Rules where the standard leaves a choice (documented in the README too):
- combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*): the least-retaining action that keeps the
  instance valid for its IOD (see `iod_types.py`);
- D on a sequence (Content Sequence, Graphic Annotation Sequence, ...): the items are kept
  for their structure, and every free-text or name value in them that the table does not
  name is replaced by a dummy; coded entries (Code Value, Coding Scheme, Code Meaning),
  numbers and relationships are kept;
- C on a sequence: the items are walked and their free text cleaned (identifiers of this
  instance removed, dates shifted);
- C on a date or date-time: shifted by the patient's offset (Modified Dates option); times
  are kept, since the shift is a whole number of days;
- C on binary values (OB/OW/UN) cannot be cleaned: they are removed;
- X on Overlay Data removes the whole overlay (every element of that 60xx group), since an
  overlay plane without its data is invalid (PS3.3 C.9.2, Overlay Data is Type 1). C on
  Overlay or Curve Data (Clean Graphics) does the same until the pixel stage can clean the
  bitmaps: a bitmap cannot be cleaned by the tag engine;
- Patient's Name and Patient ID become the site-scoped pseudonym (see `overrides.PSEUDONYM`),
  or the patient's pre-assigned one (`pseudonym_table.py`; dates and UIDs stay keyed);
- site overrides (see `overrides.py`) are in the same map; a path override (`A/*/B`) is
  looked up only inside the sequences it names; a fake value, fixed text or allow-list clean
  that a private element's VR cannot take (UN, numbers) removes that element instead;
- strict mode: the profile's map says X for public attributes outside its lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.base.element_values import vr_of
from gateway.base.identifiers import Identifiers
from gateway.deid.actions import (
    FREE_TEXT_VRS,
    TEXT_VRS,
    as_list,
    capped_age,
    dummy_value,
    empty_value,
    shift_da,
    shift_dt,
)
from gateway.deid.deid_result import DeidError as DeidError
from gateway.deid.deid_result import DeidResult, PatientIdentity
from gateway.deid.document_placeholder import ENCAPSULATED_DOCUMENT, placeholder_document
from gateway.deid.free_text import DEFAULT_SETTINGS, FreeTextSettings, TextCleaner
from gateway.deid.iod_types import choose_action, required_type
from gateway.deid.marking import IMPLEMENTATION_CLASS_UID as IMPLEMENTATION_CLASS_UID
from gateway.deid.marking import IMPLEMENTATION_VERSION_NAME as IMPLEMENTATION_VERSION_NAME
from gateway.deid.marking import __version__ as __version__
from gateway.deid.marking import mark_deidentified, rewrite_file_meta
from gateway.deid.overrides import PSEUDONYM, Rule
from gateway.deid.pseudonym_table import PseudonymTable
from gateway.deid.pseudonyms import Pseudonyms, patient_key
from gateway.deid.rule_apply import apply_rule, produced_values
from gateway.deid.standard import Option
from gateway.deid.strict import strict_action
from gateway.deid.tagsets import (
    CODE_MEANING,
    CODED_ENTRY_TAGS,
    DICOM_ROOT,
    EQUIPMENT_TAGS,
    PERSON_IDENTIFICATION_CODES,
    SCRUBBED_VRS,
    standard_scheme,
    vocabulary_uid_tags,
)
from gateway.deid.text_values import TextValues

if TYPE_CHECKING:
    from gateway.deid.compiled_rules import CompiledRules
    from gateway.text.recognizer import Recognizer

MAX_DEPTH = 64


class _Mode(Enum):
    NORMAL = "normal"
    DUMMY = "dummy"  # inside a sequence whose action is D
    DUMMY_CODES = "dummy-codes"  # D on a sequence of codes that identify a person
    CLEAN = "clean"  # inside a sequence whose action is C


@dataclass
class _Instance:
    root: Dataset
    identifiers: Identifiers
    shift_days: int | None
    pseudonym: str
    cleaner: TextCleaner
    remapped: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    produced: list[DataElement] = field(default_factory=list)
    document: bytes | None = None


class Engine:
    """Applies a compiled profile to datasets, with the pseudonyms of one site."""

    def __init__(
        self,
        profile: CompiledRules,
        pseudonyms: Pseudonyms,
        free_text: FreeTextSettings = DEFAULT_SETTINGS,
    ) -> None:
        self.profile = profile
        self.pseudonyms = pseudonyms
        self.pseudonym_table: PseudonymTable | None = None  # deid.pseudonym_table
        self.set_free_text(free_text)
        self._modified_dates = profile.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        self._remap_unlisted_uids = not profile.has(Option.RETAIN_UIDS)
        self._action_for = profile.action_for
        self._strict = profile.strict
        self._paths = profile.paths
        self._private_overrides = bool(profile.private_rules or profile.private_group_rules)

    def set_free_text(self, settings: FreeTextSettings) -> None:
        """How this engine cleans free text (the site's choice; see free_text.py)."""
        self.free_text = settings
        self._text = TextValues(self.pseudonyms, settings)
        self.recognizer: Recognizer | None = self._text.recognizer

    def patient_identity(
        self,
        patient_id: str,
        issuer: str = "",
        name: str = "",
        birth_date: str = "",
        study_uid: str = "",
    ) -> PatientIdentity:
        """The pseudonym and date shift this engine gives a patient.

        The one function behind every pseudonym: `deidentify` (network and offline) and the
        clinical CSV path both call it, so a patient's rows and images agree.
        """
        key = patient_key(patient_id, issuer, name, birth_date, study_uid)
        shift = self.pseudonyms.date_shift_days(key) if self._modified_dates else None
        table = self.pseudonym_table  # raises UnlistedPatient (a DeidError) when it says so
        listed = table.pseudonym_for(patient_id, issuer) if table is not None else None
        return PatientIdentity(listed or self.pseudonyms.patient_id(key), shift)

    def clinical_date(self, identity: PatientIdentity, value: str) -> str | None:
        """A DA value (YYYYMMDD) of this patient as the profile treats dates: shifted by the
        patient's offset, kept as it is under Retain Longitudinal Full Dates (as the images
        keep theirs), or None when the profile keeps no dates."""
        if identity.shift_days is None:
            if self.profile.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
                return shift_da(value, 0)  # validated, not moved
            return None
        return shift_da(value, identity.shift_days)

    def deidentify(self, ds: Dataset, identifiers: Identifiers) -> DeidResult:
        """De-identify `ds` in place; raise DeidError when it cannot be made safe."""
        identity = self.patient_identity(
            str(ds.get("PatientID", "") or ""),
            str(ds.get("IssuerOfPatientID", "") or ""),
            str(ds.get("PatientName", "") or ""),
            str(ds.get("PatientBirthDate", "") or ""),
            str(ds.get("StudyInstanceUID", "") or ""),
        )
        shift = identity.shift_days
        cleaner = TextCleaner(identifiers, self.recognizer, shift)
        inst = _Instance(ds, identifiers, shift, identity.pseudonym, cleaner)
        self._walk(ds, inst, parent=None, mode=_Mode.NORMAL, depth=0, path=())
        ds.PatientName = inst.pseudonym
        ds.PatientID = inst.pseudonym
        mark_deidentified(ds, self.profile)
        rewrite_file_meta(ds)
        return DeidResult(
            patient_pseudonym=inst.pseudonym,
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            date_shift_days=shift,
            remapped_uids=inst.remapped,
            kept_uids=inst.kept,
            produced=produced_values(ds, inst.produced),
            document=inst.document,
        )

    # -- the walk -------------------------------------------------------------------------

    def _walk(
        self,
        ds: Dataset,
        inst: _Instance,
        parent: int | None,
        mode: _Mode,
        depth: int,
        path: tuple[int, ...],
    ) -> None:
        if depth > MAX_DEPTH:
            raise DeidError(f"sequence nesting deeper than {MAX_DEPTH} levels")
        private: list[int] = []
        removed_overlays: set[int] = set()
        local = self._paths.get(path) if path and self._paths else None
        for key in list(ds.keys()):  # `key` (the dataset's own) for ds, the int for our tables
            t = int(key)
            group = t >> 16
            if group & 1:
                private.append(t)
                continue
            if group in (0x0000, 0x0002) or t & 0xFFFF == 0:
                # Command elements, group lengths and file meta elements misplaced in the
                # body never belong in a stored instance (the file meta is rebuilt).
                del ds[key]
                continue
            if group in removed_overlays:
                continue  # already removed with its Overlay Data
            action = local.get(t) if local is not None and t in local else self._action_for(t)
            if action is None:
                self._retained(ds, key, inst, mode, depth, path)
                continue
            if action.__class__ is Rule:
                self._apply_rule(ds, t, action, inst)  # type: ignore[arg-type]
                continue
            if "/" in action:
                action = choose_action(action, required_type(t, parent, inst.root))
            if action == "C" and 0x5000 <= group <= 0x501E:
                action = "X"  # curves (retired) are binary; nothing in them can be cleaned
            if action in ("X", "C") and 0x6000 <= group <= 0x601E and t & 0xFFFF == 0x3000:
                removed_overlays.add(group)
                for other in [int(x) for x in ds.keys() if int(x) >> 16 == group]:  # noqa: SIM118
                    del ds[other]
                continue
            self._apply(ds, key, action, inst, mode, depth, path)  # type: ignore[arg-type]
        if private:
            self._private(ds, private, inst, depth, path)

    def _retained(
        self, ds: Dataset, key: int, inst: _Instance, mode: _Mode, depth: int, path: tuple[int, ...]
    ) -> None:
        """An attribute Table E.1-1 does not name: kept, unless inside a D or C sequence
        (or, in strict mode, not in the strict list). A public tag that no edition of the
        standard defines (pydicom's dictionary) is removed: nobody can say what it holds, and
        a corrupted tag (0108,0050 for Accession Number) must not carry a value past us.
        `key`: the element's own key in `ds` (see `_walk`); `t`, its int, for the tables."""
        t = int(key)
        if not _defined_public(t):
            del ds[key]
            return
        vr = vr_of(ds, key)
        if self._strict and mode is _Mode.NORMAL and vr != "UI":
            listed = strict_action(t)
            if listed is None:
                del ds[key]
                return
            if listed == "D" and vr in FREE_TEXT_VRS:
                self._set(ds, key, vr, dummy_value(vr))
                return
        if vr == "SQ":
            self._walk_items(ds, t, inst, mode, depth, path)
        elif vr == "UI":
            if self._remap_unlisted_uids and t not in vocabulary_uid_tags():
                self._remap_uids(ds, key, inst)
            else:
                _keep_uids(ds, key, inst)
        elif vr in ("DA", "DT") and self._modified_dates:
            # Every date of the patient moves, also those the table does not list (Expiry
            # Date, Date of Gain Calibration, ...), so no original date sits beside a shifted
            # one and intervals between them stay true.
            self._shift_dates(ds, key, vr, inst)
        elif mode is _Mode.DUMMY_CODES and vr in FREE_TEXT_VRS:
            self._set(ds, key, vr, dummy_value(vr))
        elif t == CODE_MEANING and not standard_scheme(ds.get("CodingSchemeDesignator")):
            self._text.clean(ds, key, vr, inst.cleaner)  # a local code's meaning is free text
        elif t in CODED_ENTRY_TAGS:
            return  # vocabulary; the verify gate still checks it for whole values
        elif mode is _Mode.DUMMY and vr in FREE_TEXT_VRS:
            self._text.dummy(ds, key, vr, inst.cleaner)
        elif mode is _Mode.CLEAN and vr in TEXT_VRS:
            self._text.clean(ds, key, vr, inst.cleaner)
        elif vr in SCRUBBED_VRS and t not in EQUIPMENT_TAGS:
            self._text.scrub_retained(ds, key, vr, inst.cleaner)
        elif vr == "CS":
            self._text.clean(ds, key, vr, inst.cleaner)  # a label may spell the patient's name

    def _walk_items(
        self, ds: Dataset, t: int, inst: _Instance, mode: _Mode, depth: int, path: tuple[int, ...]
    ) -> None:
        inner = (*path, t)
        for item in ds[t].value or ():
            self._walk(item, inst, parent=t, mode=mode, depth=depth + 1, path=inner)

    def _apply(
        self,
        ds: Dataset,
        key: int,
        action: str,
        inst: _Instance,
        mode: _Mode,
        depth: int,
        path: tuple[int, ...],
    ) -> None:
        """`action` on one element; `key` as in `_retained`."""
        if action == "X":
            del ds[key]
            return
        t = int(key)
        if action == "K" and t >> 16 == 0x7FE0:
            return  # never touch pixel data
        vr = vr_of(ds, key)
        if action == "Z":
            self._set(ds, key, vr, empty_value(vr))
        elif action == "K":
            if vr == "SQ":
                self._walk_items(ds, t, inst, mode, depth, path)
            elif vr == "UI":
                _keep_uids(ds, key, inst)
            elif vr == "AS" and (capped := capped_age(age := ds[key].value)) != age:
                self._set(ds, key, vr, capped)
        elif action == PSEUDONYM:
            self._set(ds, key, vr, inst.pseudonym)
        elif vr == "SQ":
            # D: dummy the free text of the items; C: clean it; U: walk (UIDs are in the table).
            sub = {"D": _Mode.DUMMY, "C": _Mode.CLEAN}.get(action, mode)
            if action == "D" and t == PERSON_IDENTIFICATION_CODES:
                sub = _Mode.DUMMY_CODES  # its Code Value is the person's ID
            self._walk_items(ds, t, inst, sub, depth, path)
        elif vr == "UI" and action in ("U", "D", "C"):
            self._remap_uids(ds, key, inst)
        elif action == "D" and vr == "PN":
            self._text.person_pseudonyms(ds, key)
        elif action == "D" and t == ENCAPSULATED_DOCUMENT:
            inst.document = placeholder_document(ds)
        elif action == "D" or action == "U":
            self._set(ds, key, vr, dummy_value(vr))
        elif action == "C":
            self._clean(ds, key, vr, inst)
        else:
            raise DeidError(f"unknown action {action!r} for ({t >> 16:04X},{t & 0xFFFF:04X})")

    def _apply_rule(self, ds: Dataset, t: int, rule: Rule, inst: _Instance) -> None:
        """A site override with a parameter: fake value, fixed text, or allow-list clean."""
        if rule.recognizer is not None:
            self._text.clean_rule(ds, t, rule, inst.cleaner)
            return
        inst.remapped.update(apply_rule(ds, t, rule, vr_of(ds, t), self.pseudonyms.fake_digest))
        if rule.kind != "allow" and t in ds:  # an allow list keeps values of the input
            inst.produced.append(ds[t])

    @staticmethod
    def _set(ds: Dataset, t: int, vr: str, value: object) -> None:
        ds[t] = DataElement(t, vr, value)

    def _remap_uids(self, ds: Dataset, t: int, inst: _Instance) -> None:
        elem = ds[t]
        values = elem.value
        if not values:
            return
        originals = list(values) if isinstance(values, MultiValue | list) else [values]
        remapped = []
        for uid in originals:
            text = str(uid).strip()
            if text.startswith(DICOM_ROOT):
                remapped.append(text)  # a UID of the standard itself identifies nobody
            elif text:
                inst.remapped.add(text)
                remapped.append(self.pseudonyms.uid(text))
        self._set(ds, t, "UI", remapped if len(remapped) > 1 else remapped[0])

    def _clean(self, ds: Dataset, t: int, vr: str, inst: _Instance) -> None:
        """C: keep the value's meaning, drop what identifies (PS3.15 E.3)."""
        if vr in ("DA", "DT"):
            self._shift_dates(ds, t, vr, inst)
        elif vr == "AE":
            tokens = ["AE" + self.pseudonyms.token("ae", str(v), 10) for v in as_list(ds[t].value)]
            self._set(ds, t, vr, tokens if len(tokens) > 1 else (tokens or [None])[0])
        elif vr in TEXT_VRS:
            self._text.clean(ds, t, vr, inst.cleaner)
        elif vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            del ds[t]
        # TM, numbers and other VRs: nothing in them identifies once dates move by whole days.

    def _shift_dates(self, ds: Dataset, t: int, vr: str, inst: _Instance) -> None:
        if inst.shift_days is None:
            self._set(ds, t, vr, empty_value(vr))
            return
        shift = shift_da if vr == "DA" else shift_dt
        shifted = [shift(str(v), inst.shift_days) for v in as_list(ds[t].value)]
        if any(s is None for s in shifted):
            # A date we cannot read cannot be shifted; an empty value retains nothing.
            self._set(ds, t, vr, empty_value(vr))
        else:
            self._set(ds, t, vr, shifted if len(shifted) > 1 else (shifted or [None])[0])

    # -- private attributes (PS3.15 E.3.10) -------------------------------------------------

    def _private(
        self, ds: Dataset, tags: list[int], inst: _Instance, depth: int, path: tuple[int, ...]
    ) -> None:
        """Remove private attributes, except the safe ones under Retain Safe Private and
        those a site override names (by creator or group pattern)."""
        keep_safe = self.profile.private_action == "C"
        overridden = self._private_overrides
        creators: dict[tuple[int, int], str] = {}
        if keep_safe or overridden:
            for t in tags:
                element = t & 0xFFFF
                if 0x0010 <= element <= 0x00FF:
                    creators[(t >> 16, element)] = str(ds[t].value or "").strip()
        kept_blocks: set[tuple[int, int]] = set()
        for t in tags:
            group, element = t >> 16, t & 0xFFFF
            if element <= 0x00FF:
                continue  # creators and group length: decided after their data elements
            block = (group, element >> 8)
            creator = creators.get(block)
            action = self.profile.private_action_for(creator, t) if overridden else None
            if action is not None:
                if action.__class__ is Rule:
                    self._apply_rule(ds, t, action, inst)  # type: ignore[arg-type]
                elif action != "X":
                    self._apply(ds, t, action, inst, _Mode.NORMAL, depth, path)  # type: ignore[arg-type]
                if t in ds:
                    kept_blocks.add(block)
            elif keep_safe and (creator, group, element & 0xFF) in self.profile.safe_private:
                kept_blocks.add(block)  # safe by the table; its text is still scrubbed
                if (vr := vr_of(ds, t)) == "SQ":
                    self._walk_items(ds, t, inst, _Mode.NORMAL, depth, path)
                elif vr in SCRUBBED_VRS:
                    self._text.scrub_retained(ds, t, vr, inst.cleaner)
            else:
                del ds[t]
        for t in tags:
            group, element = t >> 16, t & 0xFFFF
            if element <= 0x00FF and (group, element) not in kept_blocks:
                del ds[t]


def _keep_uids(ds: Dataset, t: int, inst: _Instance) -> None:
    inst.kept.update(str(uid).strip() for uid in as_list(ds[t].value))


@lru_cache(maxsize=16384)
def _defined_public(tag: int) -> bool:
    """True for a public tag the data dictionary knows (repeating groups included)."""
    return bool(keyword_for_tag(tag))
