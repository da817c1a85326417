"""Hospitals and clinics named in free text go whole; a clinic named for its specialty stays
(organisations.py). The instance's own Institution Name is a known value elsewhere; these are
the places a patient was before."""

from __future__ import annotations

import pytest

from gateway.deid.free_text import retained_phi
from gateway.text.recognizer import Recognizer, default_recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("CT performed at Royal Oakhaven Hospital, see report", "CT performed at *, see report"),
        ("transferred from Harrogate District Hospital on day 3", "transferred from * on day 3"),
        ("St Mary's Hospital", "*"),
        ("Great Ormond Street Hospital", "*"),
        ("PRIOR AT ROYAL OAKHAVEN HOSPITAL", "PRIOR AT ROYAL *"),
        ("Memorial Sloan Kettering Cancer Center", "*"),
        ("Guy's and St Thomas' NHS Foundation Trust", "*"),
        ("seen in A&E at Ninewells Hospital", "seen in A&E at *"),
        ("Hospital Universitario La Paz", "*"),
        ("Hôpital Saint-Louis", "*"),
    ],
)
def test_named_institutions_are_cut_whole(recognizer: Recognizer, text: str, cleaned: str) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Seen in Fracture Clinic today", "General Hospital", "Outside Hospital CT reviewed",
        "Mayo Clinic", "Pain Clinic", "Breast Imaging Center", "Children's Hospital",
        "Community Hospital", "Anticoagulation Clinic", "Lymphoedema Clinic",
        "Haematology Clinic", "Rapid Access Chest Pain Clinic", "CHEST CLINIC",
        "Cardiology Clinic", "Emergency Department",
    ],
)  # fmt: skip
def test_clinics_named_for_what_they_treat_stay(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


def test_a_retained_descriptor_loses_the_institution(recognizer: Recognizer) -> None:
    text = "Ninewells Hospital protocol"
    spans = [s for s in recognizer.find(text) if retained_phi(text, s)]
    assert [text[s.start : s.end] for s in spans] == ["Ninewells Hospital"]
