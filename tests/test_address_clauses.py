"""After an address cue, what the rules leave between the parts they found: house, flat and
block numbers beside a cut street and town go with them (address_clauses.py); a clause
with prose left keeps its prose. Addresses in the shapes Faker writes for 12 locales."""

from __future__ import annotations

import re

import pytest

from gateway.text.recognizer import Recognizer, default_recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.mark.parametrize(
    "address",
    [
        "Versokuja 79, 83470 Saarijärvi",  # fi_FI
        "Ringstigen 614, 41003 Skellefteå",  # sv_SE
        "Mukařovského 9, 100 33 Trhové Sviny",  # cs_CZ
        "Χριστοπούλου 45,, 450 61 Βόλος",  # el_GR
        "יואב 28, עצמון שגב, 1742180",  # he_IL
        "8932 هومن چهار راه سوئیت 742, شهرستان عليرضا, اردبیل 6792908100",  # fa_IR
        "89/3287 गोपाल गुरुंग, अखनूर-809679",  # hi_IN
        "14, Bhavsar Marg, Mumbai 307666",  # en_IN
        "Suite 979 622 Kerr Rotary, South Eric, QLD, 2987",  # en_AU
        "Intrarea Nemeș Nr. 10, Motru, 176661",  # ro_RO
        "Madsenholtet 46B, 4821 Mathiasodden",  # no_NO
        "U Podjezdu 8, 550 25 Chlumec",  # cs_CZ
        "pl. Andersa 16/01, 14-040 Lębork",  # pl_PL
        "Petőfi sándor út 154., H-1757 Salgótarján",  # hu_HU
        "п. Амурск, наб. Морозова, д. 4/1, 245892",  # ru_RU
        "вулиця 3-тя Лінія 6-й ст. Люстдорфської дороги, буд. 54, Батурин, 03786",  # uk_UA
        "61 Kilgallen Street C45 X9EF Sara Ville",  # en_IE, an Eircode
        "Las Margaritas 6814, Curepto, Región del Maule, 8401910",  # es_CL
        "Hribovska pot 10, 7728 Škofja Loka",  # sl_SI
    ],
)
@pytest.mark.parametrize("cue", ["Home: ", "Address: ", "Patient lives at "])
def test_a_cued_address_goes_whole(recognizer: Recognizer, address: str, cue: str) -> None:
    text = f"{cue}{address}; phone 0748 100 339"
    cleaned = recognizer.clean(text)
    assert re.fullmatch(re.escape(cue) + r"\*(?:, \*)*; phone \*", cleaned), cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Home: 2L O2 via NC",
        "Home: Metoprolol 50 mg BID, Lasix 40 mg",
        "Home: lives alone, 3 flights of stairs",
        "Home: discharged day 3",
        "Residence: nursing home, room 12",
        "Residence time 30 s",
        "Home: Bed 4, Ward 7",
        "Home: CPAP 10 cm H2O",
        "Home: PICC line 2 lumen",
        "Home meds: aspirin 81",
        "Address: see chart",
        "Lives at home, 2 flights of stairs",
        "Address is on file",
        "the address is unknown",
        "In Spring 2019 he had CT",
        "moved to ICU",
        "Patient moved to room 12 for observation",
        "relocated to Bay 4, bed 2",
        "c/o chest pain x 3 days",
        "c/o headache, Hx of migraine, CT 2019 normal",
        "Next of kin informed",
        "NOK: wife",
        "Moved to Ward 7B",
        "Lesion moved to 12 o'clock",
    ],
)
def test_clinical_text_after_a_cue_stays(recognizer: Recognizer, text: str) -> None:
    assert recognizer.clean(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # prose left in the clause: only what the rules found goes
        ("Home: with wife Mary, 2 children", "Home: with wife *, 2 children"),
        ("Home: Dr Smith 2 weeks", "Home: Dr * 2 weeks"),
        ("Home: Eliquis 5 mg, Dr Patel", "Home: Eliquis 5 mg, Dr *"),
        (
            "Address: 12 Baker Street, London. Patient reports pain",
            "Address: *. Patient reports pain",
        ),
        # a number beside a cut name is taken with it
        ("Home: John 3", "Home: *"),
        # "address is" cues as "address:" does; a street kind joined to its name
        ("Patient's address is רח 68 30, בית חשמונאי, 7368193.", "Patient's address is *."),
        ("Moved to Waltraut-Kraus-Ring 5, 22415 Scheinfeld", "Moved to *"),
        ("Correspondence to Jasperboulevard 99, 1220 NX, Hillegom", "Correspondence to *"),
        # next of kin, correspondence and a move cue an address as "Home:" does
        (
            "Next of kin: Robert Willis, Unit 3640 Box 5622, DPO AA 09038",
            "Next of kin: *",
        ),
        ("Moved to ст. Туруханск, ш. Вавилова, д. 30, 573681", "Moved to *"),
        # the address ends before prose; one name and a number before prose are none
        (
            "Moved to Vila Sofia Alves, 13, Mangabeiras, 15736819 Albuquerque / SC last year",
            "Moved to * last year",
        ),
        ("Moved to רח 68 30, בית חשמונאי, 7368193 last year", "Moved to * last year"),
        ("Home: Mary, 2 steps to enter", "Home: *, 2 steps to enter"),
        ("Home: Mary 3 days a week", "Home: * 3 days a week"),
    ],
)
def test_only_numbers_and_address_words_are_taken(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned
