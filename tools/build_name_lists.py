"""Build the recognizer's shipped word lists in gateway/text/data/ (run by hand, offline).

Name lists come from names-dataset 3.3.1 (MIT licence), which takes 1.9 GB and 18 s to load:
that is why the gateway never imports it and ships only the small lists this writes. The safe
vocabulary is derived from pydicom's data dictionary and SR concept dictionaries, both large
clinical and technical vocabularies that are already a runtime dependency, and from the
lower-case (common noun) entries of the SCOWL English word lists that Debian ships as
wamerican and wbritish (`apt-get install wamerican wbritish`).

    .venv/bin/python tools/build_name_lists.py [--max-rank 1000]

Writes given_names.txt.gz, family_names.txt.gz, dicom_words.txt.gz, concept_words.txt.gz,
english_dictionary.txt.gz and
prints the counts to record in gateway/text/data/SOURCES.md.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "gateway" / "text" / "data"
# A derived safe word that is also among this many most popular names of some country stays a
# name: a vocabulary word like "Harris" (Harris lines) must not hide the surname.
TOP_NAME_RANK = 300
NAME_TOKEN = re.compile(r"^[^\W\d_]{2,}$")
WORD = re.compile(r"[^\W\d_]+")
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold()


def accent_fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def load_ranked(path: Path, max_rank: int) -> dict[str, int]:
    """Single-token names (hyphenated ones split) with their best rank in any country."""
    with gzip.open(path, "rb") as handle:
        table = pickle.load(handle)  # names-dataset's own file, shipped with the package
    best: dict[str, int] = {}
    for raw, info in table.items():
        ranks = [r for r in info.get("rank", {}).values() if r is not None]
        if not ranks or min(ranks) > max_rank or " " in raw.strip():
            continue
        for part in raw.strip().split("-"):
            if NAME_TOKEN.match(part):
                key = fold(part)
                best[key] = min(best.get(key, max_rank), min(ranks))
    return best


def write_gz(name: str, words: Iterable[str]) -> int:
    lines = sorted(set(words))
    # mtime=0: the same input gives byte-identical files, so a rebuild shows no spurious diff.
    with (
        open(DATA / name, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as handle,
    ):
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))
    return len(lines)


ENGLISH_LISTS = (Path("/usr/share/dict/american-english"), Path("/usr/share/dict/british-english"))


def english_dictionary() -> set[str]:
    """Lower-case entries only: capitalised ones are proper nouns, many of them names."""
    missing = [str(p) for p in ENGLISH_LISTS if not p.exists()]
    if missing:
        raise SystemExit(f"missing {missing}: apt-get install wamerican wbritish")
    words: set[str] = set()
    for path in ENGLISH_LISTS:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.isalpha() and line.islower() and len(line) > 1:
                words.add(fold(line))
    return words


def dictionary_words() -> set[str]:
    from pydicom.datadict import DicomDictionary

    words: set[str] = set()
    for entry in DicomDictionary.values():
        name, keyword = entry[2], entry[4]
        words.update(fold(w) for w in WORD.findall(name))
        words.update(fold(w) for w in CAMEL.findall(keyword))
    return {w for w in words if len(w) > 1}


def concept_words() -> set[str]:
    from pydicom.sr._concepts_dict import concepts

    words: set[str] = set()
    for by_keyword in concepts.values():
        for keyword, codes in by_keyword.items():
            words.update(fold(w) for w in CAMEL.findall(keyword))
            for meaning, _cids in codes.values():
                words.update(fold(w) for w in WORD.findall(meaning))
    return {w for w in words if len(w) > 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rank", type=int, default=2000, help="best rank kept (default 2000)")
    args = parser.parse_args(argv)
    import names_dataset  # build time only: never imported by the gateway

    source = Path(names_dataset.__file__).parent / "v3"
    given = load_ranked(source / "first_names.pkl.gz", args.max_rank)
    family = load_ranked(source / "last_names.pkl.gz", args.max_rank)
    top = {w for table in (given, family) for w, rank in table.items() if rank <= TOP_NAME_RANK}
    curated = set()
    for hand in ("english_words.txt", "clinical_words.txt"):
        for line in (DATA / hand).read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                curated.update(fold(word) for word in line.split())
    dicom = dictionary_words()
    concept = concept_words() - dicom
    english = english_dictionary() - dicom - concept
    dropped = sorted(((dicom | concept) & top) - curated)
    dropped_english = sorted((english & top) - curated)
    print(f"given names: {write_gz('given_names.txt.gz', given)}")
    print(f"family names: {write_gz('family_names.txt.gz', family)}")
    print(f"dicom words: {write_gz('dicom_words.txt.gz', (dicom - top) | (dicom & curated))}")
    print(
        f"concept words: {write_gz('concept_words.txt.gz', (concept - top) | (concept & curated))}"
    )
    kept_english = (english - top) | (english & curated)
    print(f"english dictionary: {write_gz('english_dictionary.txt.gz', kept_english)}")
    print(f"derived words left out as top-{TOP_NAME_RANK} names: {len(dropped)}")
    print(" ".join(dropped))
    print(f"dictionary words left out as top-{TOP_NAME_RANK} names: {len(dropped_english)}")
    print(" ".join(dropped_english))
    for name in sorted(DATA.glob("*.gz")):
        print(f"{name.name}: {name.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
