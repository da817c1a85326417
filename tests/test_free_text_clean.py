"""Free text that is really clean: every text the default profile keeps loses its PHI.

The generated test set (`phi_corpus`) plants PHI of every class, in names and spellings the
gateway has never seen, into images, SR, RT Structure Sets, presentation states and
encapsulated PDFs, in five character sets. Each instance goes through the real pipeline
(`process_instance`, default profile, pixel stage off). For every instance released, no
planted value in any spelling may remain anywhere: elements at any depth, private blocks,
file meta, the written bytes, the text of an encapsulated PDF. A quarantine is safe but
useless, so the share of quarantined instances must stay low; and the clinical text around
the PHI must survive, with SR dates shifted, names replaced and references remapped.

One test per kind, so a failure names the kind and, in its message, the classes of PHI and
the places where it was found.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

import pytest
from conftest import FIGURES, pydicom_as_in_the_gateway
from phi_corpus import (
    CLASSES,
    COUNTS,
    Generated,
    Hit,
    Needles,
    dataset_texts,
    fold,
    generate,
    pdf_text,
    plant_counts,
)
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from gateway.deid.actions import shift_da, shift_dt
from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, Quarantine, process_instance

SECRET = b"free-text-clean-test-secret-32by"
NUMBER_CLASSES = frozenset({"phone", "postcode", "id", "national-id", "date", "time"})
SITE = "FREE-TEXT-SITE"
MAX_QUARANTINED_SHARE = 0.05
EXAMPLES = 16


@dataclass
class Outcome:
    item: Generated
    result: Clean | Quarantine
    written: bytes = b""
    leaks: list[Hit] = field(default_factory=list)

    @property
    def output(self) -> Dataset:
        assert isinstance(self.result, Clean)
        return self.result.dataset


@dataclass
class Run:
    engine: Engine
    outcomes: list[Outcome]

    def of(self, *kinds: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.item.kind in kinds]

    def clean(self, *kinds: str) -> list[Outcome]:
        return [o for o in self.of(*kinds) if isinstance(o.result, Clean)]


def _written_texts(outcome: Outcome) -> Iterator[str]:
    """The written file as text, however a reader might decode it."""
    yield outcome.written.decode("latin-1")
    yield outcome.written.decode("utf-8", "ignore")
    if outcome.item.charset == "ISO 2022 IR 87":
        yield outcome.written.decode("iso2022_jp", "ignore")


def find_leaks(outcome: Outcome) -> list[Hit]:
    """Every plant found in the output, once per (plant, spelling), with where it was first."""
    needles = Needles(outcome.item.plants)
    hits: list[Hit] = []
    for where, vr, text in dataset_texts(outcome.output):
        hits.extend(needles.find(text, where, vr))
    for text in _written_texts(outcome):
        hits.extend(needles.find(text, "written bytes", "bytes"))
    document = outcome.output.get("EncapsulatedDocument")
    if document is not None:
        try:
            _, text = pdf_text(bytes(document))
        except Exception:  # not a PDF any more: test_pdf_output_is_a_valid_pdf says so
            text = ""
        hits.extend(needles.find(text, "PDF text", "PDF"))
    seen: dict[tuple[int, str], Hit] = {}
    for hit in hits:
        seen.setdefault((id(hit.plant), hit.spelling), hit)
    return list(seen.values())


def corpus_run(seed: int | None = None) -> Run:
    """Every generated instance (of `seed`, or the corpus's own) through the pipeline."""
    engine = Engine(default_profile(), Pseudonyms(SECRET, SITE))
    outcomes = []
    with pydicom_as_in_the_gateway():
        for item in generate() if seed is None else generate(seed):
            result = process_instance(item.dataset(), engine)
            outcome = Outcome(item, result)
            if isinstance(result, Clean):
                buffer = BytesIO()
                dcmwrite(buffer, result.dataset, enforce_file_format=True)
                outcome.written = buffer.getvalue()
                outcome.leaks = find_leaks(outcome)
            outcomes.append(outcome)
    return Run(engine, outcomes)


@pytest.fixture(scope="module")
def run() -> Run:
    done = corpus_run()
    FIGURES.append(summary(done.outcomes))
    return done


def summary(outcomes: list[Outcome]) -> str:
    """One block for the session's summary: what was planted, held, and found again."""
    planted = Counter(p.kind for o in outcomes for p in o.item.plants)
    leaked = Counter(
        h.plant.kind for o in outcomes for h in {id(h.plant): h for h in o.leaks}.values()
    )
    held = Counter(o.item.kind for o in outcomes if isinstance(o.result, Quarantine))
    values = sum(o.item.text_values for o in outcomes)
    return "\n".join(
        [
            f"free text: {len(outcomes)} generated instances, {values} text values, "
            f"{sum(planted.values())} plants; quarantined {sum(held.values())} {dict(held)}",
            "  leaked/planted by class: "
            + ", ".join(f"{k} {leaked[k]}/{planted[k]}" for k in CLASSES),
        ]
    )


def _shape(value: str) -> str:
    return re.sub(r"[^\W\d_]", "A", re.sub(r"\d", "9", value))


def leak_report(outcomes: list[Outcome]) -> str:
    """Counts of leaked plants by class, by the place found and, for numbers, by shape; and
    examples of every class (the values are synthetic, so the report may show them)."""
    leaked = [(o, hit) for o in outcomes for hit in o.leaks]
    plants = {(id(o), id(hit.plant)): (o, hit) for o, hit in leaked}
    by_class = Counter(hit.plant.kind for _, hit in plants.values())
    by_where = Counter(re.sub(r"\[\d+\]", "", hit.where) for _, hit in plants.values())
    shapes = Counter(
        f"{hit.plant.kind} {_shape(hit.plant.value)!r}"
        for _, hit in plants.values()
        if hit.plant.kind in NUMBER_CLASSES
    )
    planted = Counter(p.kind for o in outcomes for p in o.item.plants)
    lines = [
        f"{len(plants)} planted values leaked from {len({id(o) for o, _ in leaked})} "
        f"of {len(outcomes)} released instances",
        "by class (leaked/planted): "
        + ", ".join(f"{k} {by_class[k]}/{planted[k]}" for k in CLASSES if planted[k]),
        "by place found: " + ", ".join(f"{w} {n}" for w, n in by_where.most_common()),
        "numbers by shape (9 digit, A letter): "
        + ", ".join(f"{s} x{n}" for s, n in shapes.most_common(12)),
        "examples:",
    ]
    # One example of each class first, then the rest in order.
    firsts = {hit.plant.kind: key for key, (_, hit) in reversed(list(plants.items()))}
    order = [*firsts.values(), *(k for k in plants if k not in firsts.values())]
    for key in order[:EXAMPLES]:
        o, hit = plants[key]
        lines.append(
            f"  {o.item.name} [{o.item.charset}] {hit.plant.kind} {hit.plant.value!r} "
            f"(planted in {hit.plant.where}) as {hit.spelling!r} at {hit.where}"
        )
    return "\n".join(lines)


def assert_no_leaks(run: Run, *kinds: str) -> None:
    released = run.clean(*kinds)
    assert released, f"no {'/'.join(kinds)} instance was released"
    if any(o.leaks for o in released):
        pytest.fail(leak_report(released), pytrace=False)


def content_items(items: object) -> Iterator[Dataset]:
    """Every SR content item, depth first, in document order."""
    for item in items or ():  # type: ignore[attr-defined]
        yield item
        yield from content_items(item.get("ContentSequence"))


def all_items(ds: Dataset, keyword: str) -> Iterator[Dataset]:
    """Every item of every sequence named `keyword`, at any depth."""
    for elem in ds:
        if elem.VR != "SQ":
            continue
        for item in elem.value or ():
            if elem.keyword == keyword:
                yield item
            yield from all_items(item, keyword)


def missing_phrases(outcome: Outcome, place: str, texts: list[str]) -> list[str]:
    """The clinical phrases planted at `place` that none of the output `texts` holds, each
    shown with the output text most like it (so the report says what became of it)."""
    joined = fold("\n".join(texts))
    missing = []
    for phrase in outcome.item.clinical.get(place, []):
        if fold(phrase) in joined:
            continue
        closest = max(
            texts,
            key=lambda t: difflib.SequenceMatcher(None, fold(phrase), fold(t)).ratio(),
            default="",
        )
        missing.append(f"{phrase!r} -> {closest[:90]!r}")
    return missing


# --- the generated set itself -------------------------------------------------------------


def test_the_generated_set_is_large_and_every_plant_lands_in_its_input() -> None:
    corpus = generate()
    assert len(corpus) == sum(COUNTS.values())
    assert sum(item.text_values for item in corpus) >= 2000
    counts = plant_counts(corpus)
    assert all(counts[kind] >= 50 for kind in CLASSES), counts
    assert {item.charset for item in corpus} == {
        "default",
        "ISO_IR 6",
        "ISO_IR 100",
        "ISO_IR 192",
        "ISO 2022 IR 87",
    }
    # ISO 2022 IR 87 (PS3.5 6.1.2.5.3): JIS X 0208 text between ESC $ B and ESC ( B.
    japanese = [item for item in corpus if item.charset == "ISO 2022 IR 87"]
    assert japanese and all(b"\x1b$B" in item.data for item in japanese)
    missing = []
    with pydicom_as_in_the_gateway():
        for item in corpus:
            ds = item.dataset()
            texts = [text for _, _, text in dataset_texts(ds)]
            if "EncapsulatedDocument" in ds:
                pages, text = pdf_text(bytes(ds.EncapsulatedDocument))
                assert pages == int(item.expect["pages"][0])
                texts.append(text)
            needles = Needles(item.plants)
            found = {(id(h.plant), h.spelling) for t in texts for h in needles.find(t, "in")}
            missing += [
                f"{item.name}: {plant.kind} {spelling!r} ({plant.where})"
                for plant in item.plants
                for spelling in plant.spellings
                if (id(plant), spelling) not in found
            ]
    assert not missing, f"{len(missing)} spellings not found in their inputs: {missing[:10]}"


def test_the_generated_set_is_the_same_on_every_run() -> None:
    first, second = generate(counts={"sr": 2, "pdf": 1}), generate(counts={"sr": 2, "pdf": 1})
    assert [g.data for g in first] == [g.data for g in second]


# --- usefulness: few quarantines ------------------------------------------------------------


def test_few_instances_are_quarantined(run: Run) -> None:
    held = [o for o in run.outcomes if isinstance(o.result, Quarantine)]
    share = len(held) / len(run.outcomes)
    by_kind = Counter(o.item.kind for o in held)
    reasons = Counter(
        f"{o.result.reason}: {o.result.message[:70]}"  # type: ignore[union-attr]
        for o in held
    )
    assert share <= MAX_QUARANTINED_SHARE, (
        f"{len(held)} of {len(run.outcomes)} quarantined ({share:.0%}); by kind "
        f"{dict(by_kind)}; reasons {reasons.most_common(8)}"
    )


def test_quarantine_messages_quote_no_planted_phi(run: Run) -> None:
    """STYLE.md: a Quarantine's message carries no patient data (it goes to logs)."""
    quoted = [
        f"{o.item.name}: {hit.plant.kind} {hit.spelling!r}"
        for o in run.outcomes
        if isinstance(o.result, Quarantine)
        for hit in Needles(o.item.plants).find(f"{o.result.reason} {o.result.message}", "message")
    ]
    assert not quoted, quoted[:EXAMPLES]


# --- no planted PHI survives, kind by kind ---------------------------------------------------


def test_images_keep_no_planted_phi(run: Run) -> None:
    assert_no_leaks(run, "ct", "mr", "us")


def test_sr_keeps_no_planted_phi(run: Run) -> None:
    assert_no_leaks(run, "sr")


def test_rt_structure_sets_keep_no_planted_phi(run: Run) -> None:
    assert_no_leaks(run, "rtstruct")


def test_presentation_states_keep_no_planted_phi(run: Run) -> None:
    assert_no_leaks(run, "gsps")


def test_encapsulated_pdfs_keep_no_planted_phi(run: Run) -> None:
    assert_no_leaks(run, "pdf")


# --- what must survive ------------------------------------------------------------------------


def test_image_descriptors_keep_their_clinical_words(run: Run) -> None:
    missing = []
    for o in run.clean("ct", "mr", "us"):
        texts = [
            str(o.output.get(k, "") or "")
            for k in (
                "StudyDescription",
                "SeriesDescription",
                "ProtocolName",
                "RequestedProcedureDescription",
            )
        ]
        missing += [f"{o.item.name}: {p}" for p in missing_phrases(o, "Descriptor", texts)]
    assert not missing, f"{len(missing)} descriptors lost: {missing[:EXAMPLES]}"


def test_sr_text_items_keep_their_clinical_phrases(run: Run) -> None:
    missing, total = [], 0
    for o in run.clean("sr"):
        texts = [
            str(item.get("TextValue", ""))
            for item in content_items(o.output.get("ContentSequence"))
            if item.get("ValueType") == "TEXT"
        ]
        total += len(o.item.clinical.get("SRText", []))
        missing += [f"{o.item.name}: {p}" for p in missing_phrases(o, "SRText", texts)]
    assert not missing, f"{len(missing)} of {total} clinical phrases lost: {missing[:EXAMPLES]}"


def test_sr_dates_are_shifted_names_replaced_and_uids_remapped(run: Run) -> None:
    problems: Counter[str] = Counter()
    checked = 0
    for o in run.clean("sr"):
        items = list(content_items(o.output.get("ContentSequence")))
        shift = o.result.result.date_shift_days  # type: ignore[union-attr]
        by_type: dict[str, list[str]] = {}
        for item in items:
            for value_type, keyword in (
                ("DATE", "Date"),
                ("DATETIME", "DateTime"),
                ("PNAME", "PersonName"),
                ("UIDREF", "UID"),
            ):
                if item.get("ValueType") == value_type:
                    by_type.setdefault(value_type, []).append(str(item.get(keyword, "") or ""))
        expect = o.item.expect
        for value_type, originals, expected in (
            ("DATE", expect["dates"], [shift_da(d, shift or 0) for d in expect["dates"]]),
            (
                "DATETIME",
                expect["datetimes"],
                [shift_dt(d, shift or 0) for d in expect["datetimes"]],
            ),
            (
                "UIDREF",
                expect["uidrefs"],
                [run.engine.pseudonyms.uid(u) for u in expect["uidrefs"]],
            ),
        ):
            got = by_type.get(value_type, [])
            checked += len(originals)
            if len(got) != len(originals):
                problems[f"{value_type} items lost"] += len(originals) - len(got)
                continue
            problems[f"{value_type} equal to the original"] += sum(
                g == x for g, x in zip(got, originals, strict=True)
            )
            problems[f"{value_type} not the expected shifted/remapped value"] += sum(
                g != x for g, x in zip(got, expected, strict=True)
            )
        names = by_type.get("PNAME", [])
        checked += len(expect["names"])
        if len(names) != len(expect["names"]):
            problems["PNAME items lost"] += len(expect["names"]) - len(names)
        else:
            problems["PNAME equal to the original"] += sum(
                g == x for g, x in zip(names, expect["names"], strict=True)
            )
            problems["PNAME empty"] += sum(not g for g in names)
    problems = +problems
    assert checked
    assert not problems, f"of {checked} SR DATE/DATETIME/PNAME/UIDREF items: {dict(problems)}"


def test_rt_structure_sets_keep_clean_roi_names_and_clinical_text(run: Run) -> None:
    problems: list[str] = []
    for o in run.clean("rtstruct"):
        rois = list(all_items(o.output, "StructureSetROISequence"))
        if len(rois) != 8:
            problems.append(f"{o.item.name}: {len(rois)} of 8 ROIs")
            continue
        names = [str(r.get("ROIName", "")) for r in rois]
        clean = o.item.clinical.get("ROIName", [])
        problems += [f"{o.item.name}: ROI name {n!r} lost" for n in clean if n not in names]
        prefixes = o.item.clinical.get("ROINamePrefix", [])
        problems += [
            f"{o.item.name}: ROI name prefix {p!r} lost"
            for p in prefixes
            if not any(n.startswith(p) for n in names)
        ]
        descriptions = [str(r.get("ROIDescription", "")) for r in rois]
        problems += [
            f"{o.item.name}: ROI description lost {p}"
            for p in missing_phrases(o, "ROIDescription", descriptions)
        ]
        label = str(o.output.get("StructureSetLabel", ""))
        if o.item.clinical.get("RTLabel") and label != "PELVIS_PLAN":
            problems.append(f"{o.item.name}: clean Structure Set Label {label!r}")
        if not label:
            problems.append(f"{o.item.name}: Structure Set Label empty (Type 1)")
    assert not problems, f"{len(problems)} problems: {problems[:EXAMPLES]}"


def test_presentation_state_text_is_kept_and_references_are_remapped(run: Run) -> None:
    problems: list[str] = []
    uid = run.engine.pseudonyms.uid
    for o in run.clean("gsps"):
        annotations = list(o.output.get("GraphicAnnotationSequence") or ())
        if len(annotations) != 3:
            problems.append(f"{o.item.name}: {len(annotations)} of 3 graphic annotations")
            continue
        texts = [
            str(t.get("UnformattedTextValue", ""))
            for a in annotations
            for t in a.get("TextObjectSequence") or ()
        ]
        if len(texts) != 9:
            problems.append(f"{o.item.name}: {len(texts)} of 9 text objects")
        if not any("nodule 8 mm" in t for t in texts):
            problems.append(f"{o.item.name}: 'nodule 8 mm' lost")
        problems += [f"{o.item.name}: text lost {p}" for p in missing_phrases(o, "GSPSText", texts)]
        got = [
            str(r.get("ReferencedSOPInstanceUID", ""))
            for a in annotations
            for r in a.get("ReferencedImageSequence") or ()
        ]
        wanted = [uid(u) for u in o.item.expect["annotation_references"]]
        if got != wanted:
            problems.append(
                f"{o.item.name}: annotation Referenced Image Sequence "
                f"{'missing' if not got else 'not remapped as the images are'}"
            )
        series = list(o.output.get("ReferencedSeriesSequence") or ())
        got = [
            str(r.get("ReferencedSOPInstanceUID", ""))
            for s in series
            for r in s.get("ReferencedImageSequence") or ()
        ]
        if got != [uid(u) for u in o.item.expect["series_references"]]:
            problems.append(f"{o.item.name}: Referenced Series Sequence images not remapped")
        if [str(s.get("SeriesInstanceUID", "")) for s in series] != [
            uid(u) for u in o.item.expect["series_uid"]
        ]:
            problems.append(f"{o.item.name}: referenced series UID not remapped")
    assert not problems, f"{len(problems)} problems: {problems[:EXAMPLES]}"


def test_pdf_output_is_a_valid_pdf_of_the_same_pages(run: Run) -> None:
    problems: list[str] = []
    for o in run.clean("pdf"):
        ds = o.output
        if "EncapsulatedDocument" not in ds:
            problems.append(f"{o.item.name}: no Encapsulated Document")
            continue
        document = bytes(ds.EncapsulatedDocument)
        length = ds.get("EncapsulatedDocumentLength")
        if length is None or not (
            len(document) == length or (len(document) == length + 1 and document[-1:] == b"\0")
        ):
            problems.append(
                f"{o.item.name}: Encapsulated Document Length {length} for {len(document)} bytes"
            )
        if len(document) % 2:
            problems.append(f"{o.item.name}: odd length {len(document)}")
        if str(ds.get("MIMETypeOfEncapsulatedDocument", "")) != "application/pdf":
            problems.append(f"{o.item.name}: MIME type lost")
        try:
            pages, _ = pdf_text(document[: length or len(document)])
        except Exception as exc:
            problems.append(f"{o.item.name}: not a PDF pypdfium2 opens ({type(exc).__name__})")
            continue
        if pages != int(o.item.expect["pages"][0]):
            problems.append(f"{o.item.name}: {pages} pages, was {o.item.expect['pages'][0]}")
    assert run.clean("pdf"), "no encapsulated PDF was released"
    assert not problems, f"{len(problems)} problems: {problems[:EXAMPLES]}"
