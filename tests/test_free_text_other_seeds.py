"""The free-text corpus with seeds the recognizer was not tuned on.

`test_free_text_clean` runs the generated corpus of one fixed seed and allows no leak: its
names, places and sentences were seen while the rules were written. The same generator with
other seeds puts them into sentences and places no rule was written for, which is what
held-out data does. Those runs are held to a small share of leaked plants (each class's
figures go to the session summary), so that a rule which only fits the one seed shows.
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import FIGURES
from phi_corpus import CLASSES
from test_free_text_clean import corpus_run

SEEDS = (1, 2)
MAX_LEAKED_SHARE = 0.002  # of the plants of a run (about 12 of 6,200); seeds 1-6 left 1-7


@pytest.mark.parametrize("seed", SEEDS)
def test_a_corpus_of_another_seed_leaks_almost_nothing(seed: int) -> None:
    outcomes = corpus_run(seed).outcomes
    planted = Counter(p.kind for o in outcomes for p in o.item.plants)
    leaked = Counter(
        h.plant.kind for o in outcomes for h in {id(h.plant): h for h in o.leaks}.values()
    )
    FIGURES.append(
        f"free text, seed {seed}: leaked/planted "
        + ", ".join(f"{k} {leaked[k]}/{planted[k]}" for k in CLASSES)
    )
    examples = sorted({(h.plant.kind, h.where) for o in outcomes for h in o.leaks})[:10]
    assert sum(leaked.values()) <= MAX_LEAKED_SHARE * sum(planted.values()), examples
    assert leaked["patient-name"] <= 3, examples  # two-letter family names' logins ("wug")
