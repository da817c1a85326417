"""Fake-value classes: realistic, deterministic per site secret, valid for the VR, never the
original."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from gateway.deid import fakes
from gateway.deid.pseudonyms import Pseudonyms

SECRET = b"fake-values-test-secret-0123456789"
OTHER = b"another-fake-values-secret-987654321"
ORIGINALS = ["Zyxwick^Quorbelle", "ZQ-998877-X", "Glimmerdale Infirmary", "19630415", ""]

# PS3.5 6.2 forms the fakes must take, per VR.
VR_FORM = {
    "DA": re.compile(r"^\d{8}$"),
    "TM": re.compile(r"^\d{6}$"),
    "DT": re.compile(r"^\d{8}(\d{6})?$"),
    "UI": re.compile(r"^2\.25\.[1-9]\d*$"),
    "IS": re.compile(r"^\d{1,9}$"),
    "CS": re.compile(r"^[A-Z0-9 _]+$"),
}


def _digest(secret: bytes = SECRET):
    return Pseudonyms(secret, "FAKE-SITE").fake_digest


CASES = [
    (cls, vr) for cls in fakes.FAKE_CLASSES for vr in sorted(fakes.COMPATIBLE_VRS[cls])
]


@pytest.mark.parametrize(("cls", "vr"), CASES, ids=[f"{c}-{v}" for c, v in CASES])
def test_fake_is_valid_for_its_vr_and_length(cls: str, vr: str) -> None:
    for original in ORIGINALS:
        value = fakes.fake_value(cls, original, vr, _digest())
        assert value.strip(), (cls, vr)
        assert "\\" not in value
        limit = fakes.MAX_LENGTH[vr]
        if vr == "PN":
            assert all(len(group) <= limit for group in value.split("="))
        else:
            assert len(value) <= limit, (cls, vr, value)
        form = VR_FORM.get(vr)
        if form is not None:
            assert form.match(value), (cls, vr, value)
        if vr == "UI":
            assert len(value) <= 64
        if vr in ("DA", "DT") or cls in (fakes.DATE, fakes.DATETIME):
            datetime.strptime(value[:8], "%Y%m%d")  # a real calendar date
        assert value.upper() != original.upper()


def test_fakes_are_deterministic_per_secret_and_original() -> None:
    for cls in fakes.FAKE_CLASSES:
        vr = "UI" if cls == fakes.UID else "LO"
        first = fakes.fake_value(cls, "Zyxwick^Quorbelle", vr, _digest())
        assert first == fakes.fake_value(cls, "Zyxwick^Quorbelle", vr, _digest())
        others = {fakes.fake_value(cls, f"Patient {n}", vr, _digest()) for n in range(40)}
        assert len(others) > 20, cls  # spread over the word lists, not one value
    a = [fakes.fake_value(fakes.FULL_NAME, f"p{n}", "PN", _digest()) for n in range(20)]
    b = [fakes.fake_value(fakes.FULL_NAME, f"p{n}", "PN", _digest(OTHER)) for n in range(20)]
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 5


def test_names_are_person_names_and_institutions_read_as_places() -> None:
    full = fakes.fake_value(fakes.FULL_NAME, "Zyxwick^Quorbelle", "PN", _digest())
    surname, given = full.split("^")
    assert surname in fakes.words("surnames") and given in fakes.words("given_names")
    assert fakes.fake_value(fakes.GIVEN_NAME, "x", "PN", _digest()).startswith("^")
    text = fakes.fake_value(fakes.FULL_NAME, "Zyxwick^Quorbelle", "LO", _digest())
    assert text.split(" ")[0] in fakes.words("given_names")
    institution = fakes.fake_value(fakes.INSTITUTION, "Glimmerdale Infirmary", "LO", _digest())
    assert institution.split(" ")[0] in fakes.words("towns")
    location = fakes.fake_value(fakes.LOCATION, "17 Quillfeather Lane", "LO", _digest())
    assert re.match(r"^\d+ \w+ \w+, \w+$", location), location


def test_a_fake_equal_to_the_original_is_drawn_again() -> None:
    """Feed each fake back in as the original: the next fake must differ from it."""
    for cls in (fakes.SURNAME, fakes.GIVEN_NAME, fakes.FULL_NAME, fakes.DATE):
        fake = fakes.fake_value(cls, "seed", "LO", _digest())

        def colliding(fake_class: str, value: str, fake: str = fake) -> bytes:
            # The first draw for `fake` reproduces `fake` itself; later draws differ.
            return _digest()(fake_class, "seed" if value == fake else value)

        assert fakes.fake_value(cls, fake, "LO", colliding) != fake


def test_word_lists_are_shipped_and_large_enough() -> None:
    for name in ("given_names", "surnames", "towns", "streets"):
        words = fakes.words(name)
        assert len(words) >= 100, name
        assert len(set(words)) == len(words)
        assert all(w.isalpha() for w in words)


def test_a_class_that_cannot_fill_a_vr_is_an_error() -> None:
    with pytest.raises(fakes.FakeError):
        fakes.fake_value(fakes.SURNAME, "x", "DA", _digest())
    with pytest.raises(fakes.FakeError):
        fakes.fake_value(fakes.UID, "x", "SH", _digest())
