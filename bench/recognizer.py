"""How many free-text values per second the PHI recognizer handles.

The engine must still process 200+ CT instances per second per core, and each instance holds
a handful of free-text values (series and study descriptions, protocol name, comments) that
mostly repeat across a series. This times, in one process:

  load          reading the shipped name lists and vocabulary (once per process);
  uncached      every clinical descriptor of tests/data/clinical_descriptors.txt, caches
                cleared before each pass: the cost of a value seen for the first time;
  cached        the same values again: what a series costs after its first instance;
  PHI           generated sentences with names, phones, dates, addresses and IDs, uncached;
  CT series     500 instances x 6 values (4 repeat on every instance, 2 vary), cached as
                in the gateway, cleaned with date shifting.

It prints figures and never judges them: timings depend on the machine.

    .venv/bin/python bench/recognizer.py [--passes 5]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.text.lexicon import shipped_lexicon
from gateway.text.recognizer import Recognizer

DESCRIPTORS = Path(__file__).resolve().parents[1] / "tests" / "data" / "clinical_descriptors.txt"
# Obviously fake values, made up for the benchmark.
GIVEN = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pierre", "Nguyen", "Fatima", "Liam", "Ana"]
FAMILY = ["Gonzalez", "Smith", "Okafor", "Tanaka", "Petrova", "Dubois", "Van", "Haddad", "Long"]
TEMPLATES = [
    "Pt's wife {name} called 555-01{n:02d} re CT CHEST",
    "Discussed with Dr. {name} on 14 Mar 2024 at 10:{n:02d}",
    "Reviewed by {name}, MD. MRN 12-345-6{n:02d}",
    "Contact {first}.{last}@hospital.org, lives at {n} Baker Street NW1 6XE",
    "AX T2 FLAIR - prior {n:02d}/03/2023 per {name}",
]


def descriptors() -> list[str]:
    lines = DESCRIPTORS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def phi_sentences() -> list[str]:
    out = []
    for index, (first, last) in enumerate(itertools.product(GIVEN, FAMILY)):
        template = TEMPLATES[index % len(TEMPLATES)]
        name = f"{first} {last}"
        out.append(template.format(name=name, first=first, last=last, n=index % 60))
    return out


def ct_series(instances: int) -> list[str]:
    """What the gateway cleans for one CT series: mostly the same values on every instance."""
    values = []
    for number in range(1, instances + 1):
        values += ["CT CHEST ABD PELVIS W", "Body 3.0 Br40 Axial", "TAP_Routine", "ROUTINE"]
        values += [f"Image {number}", f"Acq {number // 50 + 1} scanned 14 Mar 2024 10:32"]
    return values


def rate(values: list[str], passes: int, run: Callable[[str], object],
         before: Callable[[], None] | None = None) -> float:  # fmt: skip
    """Values per second over `passes` passes; `before` runs (untimed) ahead of each pass."""
    spent = 0.0
    for _ in range(passes):
        if before is not None:
            before()
        started = time.perf_counter()
        for value in values:
            run(value)
        spent += time.perf_counter() - started
    return len(values) * passes / spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5, help="passes per measurement")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")

    print(f"python {platform.python_version()}, {platform.machine()}")
    started = time.perf_counter()
    lexicon = shipped_lexicon()
    load = time.perf_counter() - started
    print(f"load: {load:.2f} s ({len(lexicon.names)} name forms, {len(lexicon.safe)} safe forms)")

    recognizer = Recognizer()
    texts = descriptors()
    phi = phi_sentences()
    series = ct_series(500)
    rows = [
        ("descriptors, uncached", len(texts),
         rate(texts, args.passes, recognizer.clean, recognizer.cache_clear)),
        ("descriptors, cached", len(texts), rate(texts, args.passes, recognizer.clean)),
        ("PHI sentences, uncached", len(phi),
         rate(phi, args.passes, recognizer.clean, recognizer.cache_clear)),
        ("PHI sentences, find only", len(phi),
         rate(phi, args.passes, recognizer.find, recognizer.cache_clear)),
    ]  # fmt: skip
    series_rate = rate(
        series, 1, lambda v: recognizer.clean(v, shift_days=30), recognizer.cache_clear
    )
    rows.append(("CT series 500 x 6, shifted", len(series), series_rate))

    print()
    print(f"{'measurement':<28} {'values':>7} {'values/s':>11} {'us/value':>9}")
    for name, count, per_second in rows:
        print(f"{name:<28} {count:>7} {per_second:>11.0f} {1e6 / per_second:>9.1f}")
    print()
    print(f"CT series: {series_rate / 6:.0f} instances/s of text cleaning per core")
    # A long report (an SR's or a PDF's text): the time should grow with its length only.
    for copies in (10, 80):
        report = " ".join(phi) * copies
        started = time.perf_counter()
        recognizer.clean(report)
        seconds = time.perf_counter() - started
        print(f"one report of {len(report) / 1024:.0f} KiB: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
