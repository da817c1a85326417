"""RSNA CTP DicomAnonymizer scripts as de-identification profiles.

`load_script(path, lookup_table)` reads a CTP script (see `script_file.py` for the format)
and gives a `CtpProfile`: the same contract as a YAML profile (`profile.DeidProfile`), so
`run`, `anonymize`, `csv` and `profile review` take either. Its engine applies the script
with CTP's processing order and CTP's exact arithmetic for hashes, UIDs and dates, so a
site that moves from CTP keeps its pseudonyms.

The gateway's own rules still hold around the script: the verify gate searches every
output for the input's identifiers (a script that keeps Patient's Name is quarantined),
`@quarantine()` and `@skip()` send the object to quarantine with the reason, and the
reviewer reports each element the script retains beyond the Basic Profile.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian

from gateway.base.element_values import vr_of
from gateway.base.identifiers import Identifiers
from gateway.deid.ctp.element_walk import (
    PROTECTED_GROUPS,
    PROTECTED_TAGS,
    WriteError,
    apply_value,
    build_tables,
    run_script,
    snapshot,
    tag_text,
)
from gateway.deid.ctp.evaluate import KEEP, Context, CtpQuarantine, CtpSkip, make_replacement
from gateway.deid.ctp.lookup_table import IntegerStore, IntegerTable, load_lookup_table
from gateway.deid.ctp.script_file import CtpScript, ElementRule, ScriptError, read_script
from gateway.deid.ctp.script_functions import FUNCTIONS
from gateway.deid.ctp.syntax import FnCall, iter_calls
from gateway.deid.engine import DeidError, DeidResult, PatientIdentity
from gateway.deid.free_text import FreeTextSettings
from gateway.deid.marking import rewrite_file_meta
from gateway.deid.overrides import code_rank
from gateway.deid.profile import PATIENT_IDENTITY_TAGS, CsvRules, ProfileError
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.rule_apply import produced_values
from gateway.deid.standard import (
    CURVE_PATTERN,
    OVERLAY_COMMENTS_PATTERN,
    OVERLAY_DATA_PATTERN,
    PRIVATE_PATTERN,
)

if TYPE_CHECKING:
    from gateway.text.recognizer import Recognizer

PATIENT_ID = 0x00100020
SOP_INSTANCE_UID = 0x00080018
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
STUDY_DATE = 0x00080020
_REFERENCE_DATE = "20000101"
_MAX_REMEMBERED_PATIENTS = 100_000
_TRAILING = (0xFFFAFFFA, 0xFFFCFFFC)

# What each function does to the element's information, for the reviewer.
_FUNCTION_CLASS = {
    "remove": "X", "quarantine": "X", "skip": "X", "empty": "Z", "blank": "Z",
    "hash": "D", "hashname": "D", "hashptid": "D", "encrypt": "D", "lookup": "D",
    "integer": "D", "param": "D", "date": "D", "time": "D", "hashuid": "U",
    "incrementdate": "C", "hashdate": "C", "modifydate": "C", "dateinterval": "C",
    "round": "C", "truncate": "C", "initials": "C", "pathelement": "C", "process": "C",
    "contents": "K", "value": "K", "lowercase": "K", "uppercase": "K", "decrypt": "K",
    "keep": "K", "require": "K", "append": "K",
}  # fmt: skip


def load_script(
    path: Path, lookup_table: Path | None = None, lenient: bool = False
) -> CtpProfile:
    """Read a CTP script (and its lookup table); ProfileError names the file and line.
    `lenient`: what CTP's parser writes as text (see `read_script`) removes its element."""
    try:
        script = read_script(Path(path), lenient=lenient)
    except ScriptError as exc:
        raise ProfileError(exc.problems) from exc
    table = None
    if lookup_table is not None and Path(lookup_table).suffix.lower() == ".csv":
        raise ProfileError([f"{lookup_table}: a CSV lookup table is not read; write it in "
                            "CTP's properties format, one keytype/key=value per line"])  # fmt: skip
    if lookup_table is not None:
        try:
            table = load_lookup_table(Path(lookup_table))
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError([f"{lookup_table}: cannot read the lookup table: {exc}"]) from exc
    return CtpProfile(
        name=Path(path).stem,
        script=script,
        lookup_table=table,
        acknowledged=_acknowledged(script),
        csv=_csv_rules(script),
    )


def _param_list(script: CtpScript, name: str) -> tuple[str, ...]:
    text = script.params.get(name, "")
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _acknowledged(script: CtpScript) -> frozenset[str]:
    return frozenset(_param_list(script, "ACKNOWLEDGE"))


def _csv_rules(script: CtpScript) -> CsvRules:
    id_column = script.params.get("CSV_ID_COLUMN", "").strip() or None
    return CsvRules(
        id_column=id_column,
        date_columns=_param_list(script, "CSV_DATE_COLUMNS"),
        drop_columns=_param_list(script, "CSV_DROP_COLUMNS"),
    )


def classify(rule: ElementRule) -> str:
    """The reviewer's code for what a script does to its element.

    Calls that read the element itself decide (a hash of it: D; a shifted date: C; its
    contents: K); with several, the most retaining wins. A script of fixed text is D, an
    empty script empties the element (Z).
    """
    script = rule.script
    if not script:
        return "Z"
    top = iter_calls(rule.script)
    if any(c.name in ("remove", "quarantine", "skip") for c in top):
        return "X"
    codes = [_call_class(c) for c in rule.calls if c.name not in ("if", "select", "always")]
    if not codes:
        return "D"  # literal text
    return max(codes, key=code_rank)


def _call_class(call: FnCall) -> str:
    code = _FUNCTION_CLASS.get(call.name, "D")
    if call.name == "contents" and len(call.args) > 1:
        return "C"  # a regular expression takes parts out
    if call.name == "lookup" and call.arg(2).strip() in ("keep", "ignore"):
        return "K"  # a value missing from the table is kept
    return code


@dataclass(frozen=True)
class CtpProfile:
    """A CTP script, read and checked; its engine runs the script."""

    name: str
    script: CtpScript = field(repr=False)
    lookup_table: dict[str, str] | None = field(default=None, repr=False)
    acknowledged: frozenset[str] = frozenset()
    csv: CsvRules = field(default_factory=CsvRules)

    def rule(self, tag: int) -> ElementRule | None:
        """The script of a public element (None: unscripted); the last one wins."""
        for rule in reversed(self.script.rules):
            if rule.tag == tag:
                return rule
        return None

    def effective_action(self, tag: int) -> str | None:
        """What the script does to a public attribute at top level (None: left as it is)."""
        s = self.script
        group = tag >> 16
        if tag == MEDIA_STORAGE_SOP_INSTANCE_UID:
            return self.effective_action(SOP_INSTANCE_UID)  # the file meta follows it
        if s.remove_overlays and group & 0xFF00 == 0x6000:
            return "X"
        rule = self.rule(tag)
        if rule is not None:
            return classify(rule)
        if tag in PROTECTED_TAGS or group in PROTECTED_GROUPS or group in s.keep_groups:
            return None
        if group & 0xFF00 == 0x5000:
            return "X" if s.remove_curves else None
        if group & 0xFF00 == 0x6000:
            return None
        return "X" if s.remove_unspecified else None

    def effective_pattern_action(self, pattern: str) -> str:
        s = self.script
        if pattern == PRIVATE_PATTERN:
            if not s.remove_private:
                return "K"
            return "C" if s.keep_safe_private else "X"
        if pattern == CURVE_PATTERN:
            return "X" if s.remove_curves else "K"
        if pattern in (OVERLAY_DATA_PATTERN, OVERLAY_COMMENTS_PATTERN):
            if s.remove_overlays:
                return "X"
            action = self.effective_action(0x60003000 if pattern == OVERLAY_DATA_PATTERN
                                           else 0x60004000)  # fmt: skip
            return action or "K"
        raise KeyError(pattern)

    def path_overrides(self) -> tuple[tuple[str, str], ...]:
        return ()

    def keeps(self, tag: int) -> bool:
        """True when the script keeps the value as it is; never for the patient's identity."""
        if tag in PATIENT_IDENTITY_TAGS:
            return False
        return self.effective_action(tag) in (None, "K")

    def build_engine(self, pseudonyms: Pseudonyms, storage_dir: Path | None = None) -> CtpEngine:
        """With `storage_dir`, @integer numbers live in INTEGER_TABLE_FILE there, shared by
        every worker and every run, as CTP keeps them in its database."""
        return CtpEngine(self, pseudonyms, storage_dir)


# The @integer table of a gateway or `anonymize` run (keyed hashes and numbers only).
INTEGER_TABLE_FILE = "ctp-integers.db"


class CtpEngine:
    """Applies a CTP script to datasets (CTP's pseudonyms come from the script, not the
    site secret: the same script gives the same values CTP gives)."""

    def __init__(
        self, profile: CtpProfile, pseudonyms: Pseudonyms, storage_dir: Path | None = None
    ) -> None:
        self.profile = profile
        self.pseudonyms = pseudonyms
        self._integers = (
            IntegerTable(
                storage_dir / INTEGER_TABLE_FILE,
                lambda key: pseudonyms.token("ctp-integer", key, 52),
            )
            if storage_dir is not None
            else IntegerTable()
        )
        # A date shift is reported (for the re-identification mapping) only when the
        # script's Study Date is moved by a fixed number of days per patient.
        study_date = profile.rule(STUDY_DATE)
        self._shifts = study_date is not None and {c.name for c in study_date.calls} in (
            {"incrementdate"}, {"hashdate"}
        )
        # pseudonym -> the patient fields it came from, for clinical_date
        self._patients: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.set_free_text(FreeTextSettings(recognizer=False))

    def share_integers(self, store: IntegerStore) -> None:
        """@integer numbers from the database gateways share (`mapping.url`), not a file."""
        self._integers.use_store(store)

    def set_free_text(self, settings: FreeTextSettings) -> None:
        """The site's free-text choices. The script decides every element itself; the
        pipeline uses the recognizer only where the site asks it to clean a kept value the
        verify gate flags (deid.free_text.clean_on_leak)."""
        self.free_text = settings
        self.recognizer: Recognizer | None = settings.build()

    def _context(self, in_ds: Dataset, out_ds: Dataset) -> Context:
        meta = getattr(in_ds, "file_meta", None)
        ctx = Context(self.profile.script, self.profile.lookup_table, self._integers,
                      in_ds, out_ds, meta, FUNCTIONS)  # fmt: skip
        build_tables(ctx)
        return ctx

    def deidentify(self, ds: Dataset, identifiers: Identifiers) -> DeidResult:
        """Run the script over `ds` in place; DeidError when CTP would not pass it on."""
        if "SpecificCharacterSet" not in ds:
            ds.SpecificCharacterSet = "ISO_IR 100"  # as CTP does before anything else
        original = snapshot(ds)
        meta = getattr(ds, "file_meta", None)
        bare = meta is None or not meta.get("TransferSyntaxUID")
        ctx = self._context(original, ds)
        _guarded(lambda: run_script(ctx))
        for tag in _TRAILING:
            if tag in ds:
                del ds[tag]  # CTP stops writing at these (signatures, padding)
        _keep_character_set(original, ds)
        rewrite_file_meta(ds)  # as for every profile: nothing of the sender's survives
        if bare:
            _explicit_as_ctp_writes(ds)
        in_uids, out_uids = _uids(original), _uids(ds)
        return DeidResult(
            patient_pseudonym=str(ds.get("PatientID", "") or ""),
            study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
            date_shift_days=(
                _shift(original.get("StudyDate"), ds.get("StudyDate")) if self._shifts else None
            ),
            remapped_uids=in_uids - out_uids,
            kept_uids=in_uids & out_uids,
            produced=produced_values(ds, ctx.produced),
        )

    def _one_element(self, fields: dict[str, str], tag: int) -> str | None:
        """What the script writes into `tag` of a dataset holding only `fields`."""
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        for keyword, value in fields.items():
            if value:
                setattr(ds, keyword, value)
        ctx = self._context(snapshot(ds), ds)
        script = ctx.scripts.get(tag)
        if script is None:
            if self.profile.script.remove_unspecified:
                return None
            return str(ds.get(tag).value) if tag in ds else None
        _guarded(lambda: apply_value(ctx, tag, make_replacement(script, ctx, tag)))
        if tag not in ds:
            return None
        text = str(ds[tag].value or "").strip()
        return text or None

    def patient_identity(self, patient_id: str, issuer: str = "", name: str = "",
                         birth_date: str = "", study_uid: str = "") -> PatientIdentity:  # fmt: skip
        """The Patient ID the script writes for this patient, and its shift of dates."""
        fields = {"PatientID": patient_id, "IssuerOfPatientID": issuer, "PatientName": name,
                  "PatientBirthDate": birth_date, "StudyInstanceUID": study_uid}  # fmt: skip
        pseudonym = self._one_element(fields, PATIENT_ID) or ""
        shifted = self._one_element({**fields, "StudyDate": _REFERENCE_DATE}, STUDY_DATE)
        shift = _shift(_REFERENCE_DATE, shifted) if self._shifts else None
        self._patients[pseudonym] = fields
        self._patients.move_to_end(pseudonym)
        while len(self._patients) > _MAX_REMEMBERED_PATIENTS:
            self._patients.popitem(last=False)
        return PatientIdentity(pseudonym, shift)

    def clinical_date(self, identity: PatientIdentity, value: str) -> str | None:
        """A date of this patient as the script's Study Date element treats it."""
        fields = self._patients.get(identity.pseudonym)
        if fields is None:
            return None
        result = self._one_element({**fields, "StudyDate": value}, STUDY_DATE)
        if result is None or not re.fullmatch(r"\d{8}", result):
            return None
        return result


def _explicit_as_ctp_writes(ds: Dataset) -> None:
    """An input without file meta (no transfer syntax) leaves CTP in Explicit VR Little
    Endian, Pixel Data as OB up to 8 bits allocated and OW above where the input did not say.
    A big endian one is left as read: its pixel bytes would need swapping."""
    if getattr(ds, "original_encoding", (True, True))[1] is False:
        return
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if 0x7FE00010 in ds and ds.get_item(0x7FE00010).VR in (None, "OB or OW"):
        bits = ds.get("BitsAllocated")
        ds[0x7FE00010].VR = "OB" if isinstance(bits, int) and bits <= 8 else "OW"


def _keep_character_set(original: Dataset, ds: Dataset) -> None:
    """Specific Character Set stays where the output still has text beyond ASCII.

    CTP writes values in the input's character set even when the script removes the element
    that names it, leaving bytes no reader can decode; here the element is put back then.
    """
    if "SpecificCharacterSet" in ds or "SpecificCharacterSet" not in original:
        return
    if _has_non_ascii(ds):
        ds.SpecificCharacterSet = original.SpecificCharacterSet


def _has_non_ascii(ds: Dataset, depth: int = 0) -> bool:
    if depth > 64:
        return True
    for elem in ds:
        if elem.VR == "SQ":
            if any(_has_non_ascii(item, depth + 1) for item in elem.value or ()):
                return True
        elif elem.VR in _CHARSET_VRS and any(not str(v).isascii() for v in _values(elem.value)):
            return True
    return False


def _values(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, MultiValue | list) else [value]


_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


def _guarded(step: object) -> None:
    """Run a script step; what CTP would quarantine or skip becomes a DeidError."""
    try:
        step()  # type: ignore[operator]
    except CtpQuarantine as exc:
        raise DeidError(f"CTP script: {exc}; CTP would quarantine this object") from None
    except CtpSkip:
        raise DeidError(
            "CTP script: @skip() called; CTP would not pass the object on, so it is held"
        ) from None
    except WriteError as exc:
        raise DeidError(f"CTP script: {exc}") from None
    except RecursionError:
        raise DeidError("CTP script: sequences nested too deeply") from None
    except OSError:  # the integer table's store unavailable: the machine's, kept and retried
        raise
    except Exception as exc:  # a script error must not pass data through unmodified
        raise DeidError(f"CTP script failed ({type(exc).__name__})") from None


def _shift(before: object, after: object) -> int | None:
    """Days a date moved back (positive: earlier), when both are plain dates."""
    a = getattr(before, "value", before)
    b = getattr(after, "value", after)
    try:
        first = date(int(str(a)[:4]), int(str(a)[4:6]), int(str(a)[6:8]))
        second = date(int(str(b)[:4]), int(str(b)[4:6]), int(str(b)[6:8]))
    except (TypeError, ValueError):
        return None
    if not (re.fullmatch(r"\d{8}", str(a)) and re.fullmatch(r"\d{8}", str(b))):
        return None
    return (first - second).days


def _uids(ds: Dataset, depth: int = 0) -> set[str]:
    """Every UID value in a dataset, at every depth."""
    found: set[str] = set()
    if depth > 64:
        return found
    for key in list(ds.keys()):
        tag = int(key)
        if tag >> 16 == 0x7FE0:
            continue
        vr = vr_of(ds, tag)
        if vr == "UI":
            value = ds[tag].value
            values = value if isinstance(value, MultiValue | list) else [value]
            found.update(str(v).strip() for v in values if v and str(v).strip())
        elif vr == "SQ":
            for item in ds[tag].value or ():
                found |= _uids(item, depth + 1)
    return found


__all__ = ["KEEP", "CtpEngine", "CtpProfile", "classify", "load_script", "tag_text"]
