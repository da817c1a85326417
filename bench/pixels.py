"""How fast the pixel stage cleans burned-in text, and how much of it: issue 15, point 5.

Every figure is of `clean_pixels` (or of the detector alone) on pydicom Datasets built in
memory from synthetic frames whose text is known (tests/test_text_detection.py renders
them; rendering is not timed):

- US 640x480 RGB single-frame instances through `clean_pixels`: text found, read, blanked,
  looked at again, and the last look is the pixel verify; in 1 and N worker processes;
- detection alone (`detect.detect_boxes`) on the same frames, 1 and N workers (no reading);
- CT 512x512 (12 bits stored) with corner text, and without text: ms per instance;
- a static-text cine (a 60-frame 640x480 US loop: a banner and settings around an
  ultrasound region where the speckle changes every frame): effective frames/s of
  `clean_pixels` on the whole instance, in 1 worker and in N workers cleaning N loops at
  once, and how many frames reused an earlier frame's boxes (cine.py);
- the same US rows with the pytesseract fallback backend (fewer frames: it is slow);
- recall: of the drawn lines the allow list does not keep, the share whose every ink pixel
  lies in a blanked box, and the share of the image blanked away from text (4 px margin).

Worker processes start with OMP_THREAD_LIMIT=1 (Tesseract's OpenMP; onnxruntime runs one
thread per process), render their inputs, and clean one instance untimed (models, the
Tesseract API, imports) before the clock starts. Frames/s are frames over wall seconds of
the whole batch; per core is that over min(workers, CPUs); CPU ms/frame is each worker's
own CPU time (time.process_time), which other work on a shared machine does not inflate.
It prints figures, and the issue's targets beside them, and never judges them: timings
depend on the machine.

    .venv/bin/python bench/pixels.py [--frames 16] [--cine-frames 60] [--workers 2] [--quick]

bench/run.py uses `is_available`, `ct_frame`, `ultrasound_frame` and `frames_per_second`
(text found and boxes chosen per frame, in 1 process) for its OCR row.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's OpenMP: processes share cores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_text_detection import NAMES, WHITE, YELLOW, Line, draw_texts, synthetic_frame

from gateway.base.identifiers import Identifiers, collect_identifiers
from gateway.pixels import clean, detect, text_finder
from gateway.pixels.clean import PixelError, clean_pixels
from gateway.pixels.frames import decode_frames, ocr_image
from gateway.pixels.ocr import boxes_to_redact
from gateway.pixels.regions import Box
from gateway.pixels.rules import PixelConfig, Selection, load_pixel_config

US_SOP = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
US_MULTI_SOP = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
CINE_REGION = (80, 90, 560, 420)  # x0, y0, x1, y1 (exclusive) of the loop's ultrasound image
MARGIN_PX = 4  # blanking this close to a line's ink counts as on the text
TARGET_US_FPS, TARGET_CINE_FPS, TARGET_BLANK_CT_MS = 8.0, 100.0, 10.0  # issue 15's targets


# --- inputs: synthetic frames with known text, built into Datasets -----------------------


@dataclass
class Sample:
    """One instance's pixels (stored values, ready as Pixel Data) and what is drawn on it."""

    kind: str  # "us", "ct", "ct-blank" or "cine"
    frames: int
    rows: int
    columns: int
    colour: bool
    pixel_data: bytes
    lines: list[Line]  # on every frame
    patient: dict[str, str] = field(default_factory=dict)


def _patient(name: str, lines: list[Line]) -> dict[str, str]:
    """The identifying attributes the drawn text shows: name, and the ID drawn as "ID n"
    (US) or as a bare number (CT); the verify checks what is left against them."""
    person = {"PatientName": name.replace(", ", "^").replace(" ", "^", 1)}
    for line in lines:
        digits = line.text.removeprefix("ID ").strip()
        if digits.isdigit() and len(digits) >= 6:
            person["PatientID"] = digits
    return person


def render(kind: str, seed: int, cine_frames: int = 60) -> Sample:
    """The instance of `kind` number `seed` (deterministic)."""
    if kind == "cine":
        return _cine(seed, cine_frames)
    image, lines = synthetic_frame(kind, seed)
    if kind == "us":
        person = _patient(NAMES[seed % len(NAMES)], lines)
        return Sample(kind, 1, 480, 640, True, image.tobytes(), lines, person)
    stored = image.astype(np.uint16) * 16  # 12 bits stored, as a CT's Hounsfield + 1024
    person = _patient(NAMES[(seed + 1) % len(NAMES)], lines) if lines else {}
    if lines:
        person["PatientBirthDate"] = "19800131"  # drawn as 1980-01-31
    return Sample(kind, 1, 512, 512, False, stored.tobytes(), lines, person)


def _cine(seed: int, count: int) -> Sample:
    """A US loop: static annotations around an ultrasound region, new speckle every frame."""
    rng = np.random.default_rng(5000 + seed)
    name = NAMES[seed % len(NAMES)]
    screen, lines = draw_texts(
        np.zeros((480, 640, 3), np.uint8),
        [
            (name, 20, 12, 18, WHITE),
            ("ID 53120877", 20, 40, 13, WHITE),
            ("14/03/2021 10:41:07", 440, 12, 14, YELLOW),
            ("C5-1  5.0MHz", 570, 100, 10, WHITE),
            ("MI 0.8", 570, 120, 10, WHITE),
            ("0", 566, 92, 9, WHITE),
            ("5", 566, 250, 9, WHITE),
            ("10", 566, 405, 9, WHITE),
            ("Hospital 3  Echo", 240, 450, 13, WHITE),
        ],
    )
    x0, y0, x1, y1 = CINE_REGION
    frames = np.repeat(screen[None], count, axis=0)
    for index in range(count):
        speckle = rng.gamma(2.0, 30.0, (y1 - y0, x1 - x0)).clip(0, 200).astype(np.uint8)
        frames[index, y0:y1, x0:x1] = speckle[..., None]
    return Sample("cine", count, 480, 640, True, frames.tobytes(), lines, _patient(name, lines))


def instance(sample: Sample) -> Dataset:
    """A Dataset for `sample`, as a modality would send it (Pixel Data not copied)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = {"us": US_SOP, "cine": US_MULTI_SOP}.get(sample.kind, CT_SOP)
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US" if sample.colour else "CT"
    ds.StudyDate = "20210314"
    for keyword, value in sample.patient.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = sample.rows, sample.columns
    if sample.frames > 1:
        ds.NumberOfFrames = sample.frames
    if sample.colour:
        ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelRepresentation = 0
    if sample.kind == "cine":
        region = Dataset()
        region.RegionLocationMinX0, region.RegionLocationMinY0 = CINE_REGION[:2]
        region.RegionLocationMaxX1 = CINE_REGION[2] - 1
        region.RegionLocationMaxY1 = CINE_REGION[3] - 1
        region.RegionSpatialFormat = 1
        ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = sample.pixel_data
    return ds


_configs: dict[bool, PixelConfig] = {}


def config(colour: bool) -> PixelConfig:
    """US: the default configuration (its selection covers US); CT: CT selected."""
    if colour not in _configs:
        chosen = load_pixel_config(None)  # with the shipped allow list
        if not colour:
            chosen.selection = Selection(modalities=frozenset({"CT"}))
        _configs[colour] = chosen
    return _configs[colour]


# --- what a worker process does ----------------------------------------------------------

_samples: dict[tuple[str, int], Sample] = {}


@dataclass
class Result:
    seconds: float
    frames: int
    boxes: list[Box]
    cpu: float = 0.0  # the worker's CPU seconds (time.process_time) for this instance
    frames_reused: int = 0
    lines_reused: int = 0
    quarantined: bool = False


def _init(keys: list[tuple[str, int]], backend: str, cine_frames: int) -> None:
    """Render this pool's inputs, choose the backend, clean one instance untimed."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
    if backend == "tesseract":  # the bench forces the fallback; the gateway picks it itself
        clean.chosen_backend = lambda: "tesseract"
    for key in keys:
        _samples[key] = render(*key, cine_frames=cine_frames)
    warm = next(key for key in keys if key[0] != "cine")
    clean_job(warm)
    detect_job(warm)


def clean_job(key: tuple[str, int]) -> Result:
    sample = _samples[key]
    ds = instance(sample)
    identifiers = collect_identifiers(ds, lambda tag: False)
    chosen = config(sample.colour)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        report = clean_pixels(ds, identifiers, chosen)
    except PixelError:
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return Result(seconds, sample.frames, [], cpu, quarantined=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Result(
        seconds, report.frames, report.boxes, cpu, report.frames_reused, report.lines_reused
    )


def detect_job(key: tuple[str, int]) -> Result:
    """Detection alone on what `clean_pixels` gives the detector: the RGB frame, or the
    grey view (`ocr_image`: rescale, window, stretch) of a monochrome one."""
    sample = _samples[key]
    ds = instance(sample)
    frame = decode_frames(ds)[0]
    image = frame if frame.ndim == 3 else ocr_image(frame, ds)
    start, cpu = time.perf_counter(), time.process_time()
    boxes = detect.detect_boxes(image)
    return Result(time.perf_counter() - start, 1, boxes, time.process_time() - cpu)


@dataclass
class Run:
    """One batch: wall seconds over all workers, and each instance's result."""

    workers: int
    wall: float
    results: list[Result]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results)

    @property
    def rate(self) -> float:
        return self.frames / self.wall

    @property
    def per_core(self) -> float:
        return self.rate / min(self.workers, os.cpu_count() or 1)

    @property
    def ms_each(self) -> float:
        return 1000 * sum(r.seconds for r in self.results) / len(self.results)

    @property
    def cpu_ms_per_frame(self) -> float:
        """CPU time per frame in its worker: what the work costs, whatever else runs on
        the machine (wall figures of a shared machine are not)."""
        return 1000 * sum(r.cpu for r in self.results) / max(self.frames, 1)

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.results)


def batch(pool: ProcessPoolExecutor, workers: int, job: Callable, keys: list) -> Run:
    start = time.perf_counter()
    results = list(pool.map(job, keys))
    return Run(workers, time.perf_counter() - start, results)


def pool(workers: int, backend: str, keys: list, cine_frames: int) -> ProcessPoolExecutor:
    """A pool whose every worker has run its initializer (rendered, warmed up)."""
    executor = ProcessPoolExecutor(
        workers, initializer=_init, initargs=(keys, backend, cine_frames)
    )
    ready: set[int] = set()
    while len(ready) < workers:  # a worker answers only once its initializer is done
        ready.update(executor.map(_pid, range(workers)))
    return executor


def _pid(_: int) -> int:
    time.sleep(0.05)  # long enough for an idle worker to leave the next one to another
    return os.getpid()


# --- recall -------------------------------------------------------------------------------


@dataclass
class Recall:
    lines: int = 0  # drawn lines the allow list does not keep, over all frames
    blanked: int = 0  # of them, every ink pixel blanked
    missed: dict[str, int] = field(default_factory=dict)  # text -> times missed
    kept_allowed: int = 0  # allow-listed lines left (partly) readable
    allowed: int = 0
    outside: list[float] = field(default_factory=list)  # per frame, share blanked off text


def recall(samples: list[Sample], results: list[Result]) -> Recall:
    into = Recall()
    allow = config(True).allow_list()
    for sample, result in zip(samples, results, strict=True):
        if result.quarantined:
            continue
        text = np.zeros((sample.rows, sample.columns), bool)
        for line in sample.lines:
            x0, y0, x1, y1 = line.box
            text[
                max(y0 - MARGIN_PX, 0) : y1 + MARGIN_PX, max(x0 - MARGIN_PX, 0) : x1 + MARGIN_PX
            ] = True
        for index in range(sample.frames):
            blanked = np.zeros_like(text)
            for box in result.boxes:
                if box.frame in (None, index):
                    blanked[box.y0 : box.y1, box.x0 : box.x1] = True
            into.outside.append(float((blanked & ~text).mean()))
            for line in sample.lines:
                x0, y0, x1, y1 = line.box
                whole = bool(blanked[y0:y1, x0:x1][line.ink].all())
                if allow.allows(line.text):
                    into.allowed += 1
                    into.kept_allowed += not whole
                    continue
                into.lines += 1
                into.blanked += whole
                if not whole:
                    into.missed[line.text] = into.missed.get(line.text, 0) + 1
    return into


# --- bench/run.py's OCR row ----------------------------------------------------------------


def is_available() -> str | None:
    """None when the pixel stage can find text here (either backend)."""
    return text_finder.is_available()


def ultrasound_frame(seed: int) -> np.ndarray:
    return synthetic_frame("us", seed)[0]


def ct_frame(seed: int) -> np.ndarray:
    return synthetic_frame("ct", seed)[0]


def find_and_choose(frame: np.ndarray) -> int:
    """Text found and read on one frame, boxes chosen (no blanking, no verify look)."""
    grey = ocr_image(frame, Dataset())
    words = text_finder.find_words(grey, frame if frame.ndim == 3 else None)
    allow = config(True).allow_list()
    return len(boxes_to_redact(words, "redact_all_text", allow, Identifiers()))


def frames_per_second(frames: list[np.ndarray], workers: int) -> tuple[float, int]:
    """Frames/s of `find_and_choose` and the boxes chosen, for bench/run.py."""
    if workers == 1:
        find_and_choose(frames[0])  # warm up: model, Tesseract, allow list
        start = time.perf_counter()
        boxes = sum(find_and_choose(f) for f in frames)
        return len(frames) / (time.perf_counter() - start), boxes
    with ProcessPoolExecutor(max_workers=workers) as executor:
        list(executor.map(find_and_choose, frames[:workers]))
        start = time.perf_counter()
        boxes = sum(executor.map(find_and_choose, frames))
        return len(frames) / (time.perf_counter() - start), boxes


# --- the report -----------------------------------------------------------------------------


def _rate_row(label: str, run: Run, extra: str = "") -> str:
    quarantined = f", {run.quarantined} quarantined" if run.quarantined else ""
    return (
        f"{label:44s} workers={run.workers}  {run.rate:7.2f} frames/s  "
        f"{run.per_core:7.2f} /core  {run.ms_each:7.1f} ms each  "
        f"{run.cpu_ms_per_frame:7.1f} ms CPU/frame  "
        f"({run.frames} frames{quarantined}{extra})"
    )


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _recall_rows(name: str, found: Recall) -> list[str]:
    if not found.lines:
        return [f"recall {name}: nothing measured"]
    outside = 100 * np.asarray(found.outside)
    missed = ", ".join(f"{text!r} x{n}" for text, n in sorted(found.missed.items()))
    return [
        f"recall {name}: {found.blanked}/{found.lines} lines fully blanked "
        f"({100 * found.blanked / found.lines:.1f}%), blanked off text mean "
        f"{outside.mean():.2f}% worst {outside.max():.2f}% of the image; "
        f"allow-listed lines not wholly blanked: {found.kept_allowed}/{found.allowed}",
        *([f"  missed: {missed}"] if missed else []),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="US and CT instances per run")
    parser.add_argument("--cine-frames", type=int, default=60, help="frames per cine loop")
    parser.add_argument("--workers", type=int, default=2, help="processes for the pool runs")
    parser.add_argument("--tesseract-frames", type=int, default=2, help="US frames, fallback")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args(argv)
    if min(args.frames, args.cine_frames, args.workers) < 1 or args.tesseract_frames < 0:
        parser.error("--frames, --cine-frames and --workers take a positive number")
    if args.quick:
        args.frames, args.cine_frames, args.tesseract_frames = 2, 6, 0
    missing = text_finder.missing("fast")
    if missing is not None:
        print(f"fast text finder not available: {missing}", file=sys.stderr)
        return 2
    counts = sorted({1, max(args.workers, 1)})
    most = counts[-1]
    print(
        f"machine: python {platform.python_version()} ({platform.machine()}), "
        f"{os.cpu_count()} CPUs, load average {_load()}, "
        f"OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT')}; "
        f"{args.frames} US/CT instances per run, cines of {args.cine_frames} frames",
        flush=True,
    )
    keys = {
        "us": [("us", seed) for seed in range(args.frames)],
        "ct": [("ct", seed) for seed in range(args.frames)],
        "blank": [("ct-blank", seed) for seed in range(args.frames)],
        "cine": [("cine", seed) for seed in range(most)],  # N loops at once on N workers
        "slow": [("us", seed) for seed in range(min(args.tesseract_frames, args.frames))],
    }
    runs: dict[tuple[str, int], Run] = {}
    for count in counts:
        print(f"  ... fast backend, {count} worker(s)", file=sys.stderr, flush=True)
        needed = keys["us"] + keys["cine"] + (keys["ct"] + keys["blank"] if count == 1 else [])
        with pool(count, "fast", needed, args.cine_frames) as executor:
            runs["us", count] = batch(executor, count, clean_job, keys["us"])
            runs["detect", count] = batch(executor, count, detect_job, keys["us"])
            if count == 1:
                runs["ct", count] = batch(executor, count, clean_job, keys["ct"])
                runs["blank", count] = batch(executor, count, clean_job, keys["blank"])
                runs["blank-detect", count] = batch(executor, count, detect_job, keys["blank"])
            runs["cine", count] = batch(executor, count, clean_job, keys["cine"])
    for count in counts if keys["slow"] else []:
        print(f"  ... tesseract backend, {count} worker(s)", file=sys.stderr, flush=True)
        with pool(count, "tesseract", keys["slow"], args.cine_frames) as executor:
            runs["slow", count] = batch(executor, count, clean_job, keys["slow"])

    labels = {
        "us": "US 640x480 clean_pixels (read + verify)",
        "detect": "US 640x480 detect_boxes only (no reading)",
        "ct": "CT 512x512 with text, clean_pixels",
        "blank": "CT 512x512 without text, clean_pixels",
        "blank-detect": "CT 512x512 without text, detect_boxes only",
        "cine": f"cine loops of {args.cine_frames} frames, clean_pixels",
        "slow": "US 640x480 clean_pixels, tesseract fallback",
    }
    for (kind, _), run in runs.items():
        extra = ""
        if kind == "cine":
            reused = sum(r.frames_reused for r in run.results)
            lines = sum(r.lines_reused for r in run.results)
            extra = f"; {len(run.results)} loops, {reused} frames reused, {lines} lines not re-read"
        print(_rate_row(labels[kind], run, extra))
    for name, kind, cine_frames in (
        ("US", "us", 0), ("CT", "ct", 0), ("cine", "cine", args.cine_frames),
        ("US tesseract", "slow", 0),
    ):  # fmt: skip
        if (kind, 1) in runs:
            samples = [render(*key, cine_frames=cine_frames) for key in keys[kind]]
            print("\n".join(_recall_rows(name, recall(samples, runs[kind, 1].results))))
    print(f"load average at the end {_load()} (other work on the machine slows the pool runs)")
    print(
        f"issue 15 targets: US >= {TARGET_US_FPS:g} frames/s on 2 workers "
        f"(here {runs['us', most].rate:.2f} on {most}); static-text cine >= "
        f"{TARGET_CINE_FPS:g} frames/s (here {runs['cine', 1].rate:.1f} on 1, "
        f"{runs['cine', most].rate:.1f} on {most}); text-free CT < {TARGET_BLANK_CT_MS:g} ms "
        f"(here {runs['blank', 1].ms_each:.1f} ms, {runs['blank', 1].cpu_ms_per_frame:.1f} ms CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
