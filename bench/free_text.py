"""What free-text recognition costs: engine instances/s with the PHI recognizer off and on.

The recognizer (gateway/text) reads every text value the profile keeps or cleans; this
measures what that does to the engine's throughput on the synthetic CT study bench/engine.py
uses (500 instances, default profile), and on the generated PHI test set of
tests/phi_corpus.py, whose instances are mostly free text (SR, RT structures, GSPS, PDF).

Rows (each instance read untimed from memory, then `process_instance` timed):

  default profile     the engine as `default_profile().build_engine` gives it today;
  recognizer off/on   the same engine with `FreeTextSettings(recognizer=False/True)`, when
                      the engine has that switch (gateway/deid/free_text.py);
  recognizer alone    `Recognizer.find` over the study's text values, cache cleared first
                      (every value, and the distinct values only).

It prints figures and never judges them: timings depend on the machine.

    .venv/bin/python bench/free_text.py [--instances 500] [--rows 128] [--repeat 3]
                                        [--no-corpus]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import BENCH_SECRET, BENCH_SITE, Tally, time_process  # bench/ is not a package

from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import configure_pydicom, process_instance
from gateway.tools.synthetic import make_ct_study

TESTS = Path(__file__).resolve().parents[1] / "tests"
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})


@dataclass
class Row:
    name: str
    seconds: float
    done: int
    tally: Tally | None = None
    unit: str = "inst"


def build_engine(recognizer: bool | None) -> Engine:
    """The default engine; `recognizer` None leaves its free-text settings as they are."""
    engine = default_profile().build_engine(Pseudonyms(BENCH_SECRET, BENCH_SITE))
    if recognizer is not None:
        from gateway.deid.free_text import FreeTextSettings

        engine.set_free_text(FreeTextSettings(recognizer=recognizer))
    return engine


def has_free_text_switch() -> bool:
    try:
        from gateway.deid.free_text import FreeTextSettings
    except ImportError:
        return False
    return hasattr(Engine, "set_free_text") and "recognizer" in getattr(
        FreeTextSettings, "__dataclass_fields__", {}
    )


def clear_recognizer_caches(engine: Engine) -> None:
    recognizer = getattr(engine, "recognizer", None)
    if recognizer is not None and hasattr(recognizer, "cache_clear"):
        recognizer.cache_clear()


def engine_pass(engine: Engine, inputs: list[bytes]) -> tuple[float, Tally]:
    """`process_instance` on every input, the recognizer's cache cold at the start (a worker
    that has just started); reading is not timed."""
    clear_recognizer_caches(engine)
    return time_process(engine, (partial(dcmread, BytesIO(data)) for data in inputs))


def time_engines(
    label: str, inputs: list[bytes], makers: dict[str, Callable[[], Engine]], repeat: int
) -> list[Row]:
    """The best of `repeat` passes per engine, the engines taking turns pass by pass: the
    machine may be shared, and turns spread its neighbours' load over every engine alike.
    One untimed instance first for imports and name lists."""
    engines = {name: make() for name, make in makers.items()}
    for engine in engines.values():
        process_instance(dcmread(BytesIO(inputs[0])), engine)
    best: dict[str, tuple[float, Tally]] = {}
    for _ in range(repeat):
        for name, engine in engines.items():
            spent, tally = engine_pass(engine, inputs)
            if name not in best or spent < best[name][0]:
                best[name] = (spent, tally)
    return [
        Row(f"{label}: {name}", spent, len(inputs), tally) for name, (spent, tally) in best.items()
    ]


def text_values(ds: Dataset) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from text_values(item)
        elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
            yield from (str(v) for v in values)


def time_recognizer(name: str, values: list[str], repeat: int) -> Row | None:
    try:
        from gateway.text.recognizer import default_recognizer
    except ImportError:
        return None
    recognizer = default_recognizer()
    recognizer.find("warm up the name lists")
    best = float("inf")
    for _ in range(repeat):
        recognizer.cache_clear()
        started = time.perf_counter()
        for value in values:
            recognizer.find(value)
        best = min(best, time.perf_counter() - started)
    return Row(name, best, len(values), unit="value")


def study_inputs(instances: int, rows: int) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix="bench-free-text-") as folder:
        paths = make_ct_study(Path(folder), instances=instances, rows=rows, columns=rows)
        return [p.read_bytes() for p in paths]


def corpus_inputs() -> list[bytes]:
    sys.path.insert(0, str(TESTS))
    from phi_corpus import generate

    return [item.data for item in generate()]


def measure(label: str, inputs: list[bytes], repeat: int) -> list[Row]:
    makers: dict[str, Callable[[], Engine]] = {"default profile": lambda: build_engine(None)}
    if has_free_text_switch():
        makers["recognizer off"] = lambda: build_engine(False)
        makers["recognizer on"] = lambda: build_engine(True)
    else:
        print(f"note: the engine has no free-text switch; {label} rows show the recognizer alone")
    rows = time_engines(label, inputs, makers, repeat)
    values = [v for data in inputs for v in text_values(dcmread(BytesIO(data)))]
    for name, chosen in (
        (f"{label}: recognizer alone, all values", values),
        (f"{label}: recognizer alone, distinct", list(dict.fromkeys(values))),
    ):
        row = time_recognizer(name, chosen, repeat)
        if row is not None:
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500, help="CT slices (default 500)")
    parser.add_argument(
        "--rows", type=int, default=128, help="slice size; the engine never reads pixels"
    )
    parser.add_argument("--no-corpus", action="store_true", help="skip the PHI test set")
    parser.add_argument("--repeat", type=int, default=3, help="passes per row, best kept")
    args = parser.parse_args(argv)
    if min(args.instances, args.rows, args.repeat) < 1:
        parser.error("--instances, --rows and --repeat must be at least 1")
    configure_pydicom()
    print(
        f"python {platform.python_version()}, pydicom {pydicom.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    started = time.perf_counter()
    study = study_inputs(args.instances, args.rows)
    print(
        f"study: {len(study)} synthetic CT instances {args.rows}x{args.rows}, generated in "
        f"{time.perf_counter() - started:.1f} s (not timed)"
    )
    rows = measure("CT study", study, args.repeat)
    if not args.no_corpus:
        corpus = corpus_inputs()
        print(f"PHI test set: {len(corpus)} instances (tests/phi_corpus.py)")
        rows += measure("PHI test set", corpus, args.repeat)

    print()
    print(f"{'measurement':<44} {'per s':>9} {'ms each':>9} {'outcome':>20}")
    for row in rows:
        rate = row.done / row.seconds if row.seconds else float("inf")
        each = 1000.0 * row.seconds / max(1, row.done)
        if row.tally is None:
            outcome = f"{row.done} values"
        else:
            outcome = f"{row.tally.clean} clean"
            if row.tally.quarantined:
                outcome += f", {row.tally.quarantined} quar."
        print(f"{row.name:<44} {rate:>9.1f} {each:>9.3f} {outcome:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
