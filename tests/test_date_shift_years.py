"""A date shift never keeps a date's day and month: no shift lies within YEAR_MARGIN days of
a whole number of years ("28 May 2009" would come out as "28 May 2000", a birthday told)."""

from __future__ import annotations

from datetime import date, timedelta

from gateway.deid.pseudonyms import MAX_SHIFT_DAYS, MIN_SHIFT_DAYS, YEAR_MARGIN, Pseudonyms


def test_no_shift_keeps_day_and_month() -> None:
    pseudonyms = Pseudonyms(b"date-shift-years-test-secret-32b", "YEARS")
    birthday = date(1977, 5, 28)
    for n in range(20_000):
        days = pseudonyms.date_shift_days(f"patient-{n}")
        assert MIN_SHIFT_DAYS <= days <= MAX_SHIFT_DAYS
        shifted = birthday - timedelta(days=days)
        moved = abs((shifted.replace(year=2000) - birthday.replace(year=2000)).days)
        assert min(moved, 366 - moved) >= YEAR_MARGIN - 1, (n, days, shifted)


def test_the_same_patient_keeps_one_shift() -> None:
    pseudonyms = Pseudonyms(b"date-shift-years-test-secret-32b", "YEARS")
    assert len({pseudonyms.date_shift_days("patient-7") for _ in range(3)}) == 1
