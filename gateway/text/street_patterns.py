"""How streets are written, country by country: the shapes places.py starts an address from.

A house number before words ending in a street kind (US and UK: "12 Baker Street", "21174
Amy Well"), a street kind joined to its name before the number (German, Dutch, Nordic:
"Hauptstraße 5"), a kind written apart after the name (Finnish, Hungarian, Turkish, Czech:
"Lentokapteenin kuja 268"), a P.O. box, and a kind before the name (Romance and Slavic
languages: "5 rue de la Paix", "plac Witosa 16"). Also the words an address is written with:
street kinds in lower case before a name in Cyrillic, Greek, Armenian and Georgian, region
codes and countries after a town.
"""

from __future__ import annotations

import re

ADDRESS_PATTERNS = tuple(
    re.compile(p)
    for p in (
        # 12 Baker Street, 221B Baker St., 1600 PENNSYLVANIA AVE
        # ("at 16:29, LOW DOSE CT" is a time and a modality, not 29 Low Dose Court).
        r"(?<![\w.:/-])(?:\d{1,4}/)?\d{1,5}[A-Za-z]?,?\s+(?:[A-ZÀ-ÞĀ-ž][\w'’.-]*\s+){1,4}"
        r"(?i:street|st|road|rd"
        r"|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|(?-i:Ct|ct)|place|pl|terrace|close"
        r"|crescent|square|sq|highway|hwy|parkway|pkwy|gardens|grove|row|mews|walk|circle"
        r"|trail|alley|annex|bay|beach|bend|bluffs?|branch|bridge|brooks?|burgs?|bypass|camp"
        r"|canyon|causeway|cliffs?|commons?|corners?|courts|coves?|creek|crossing|dale|drives"
        r"|estates?|expressway|falls|ferry|fords?|forest|forges?|forks?|fort|freeway|garden"
        r"|gateway|glens?|harbou?rs?|haven|heights|hills?|hollow|inlet|islands?|isle|keys?"
        r"|knolls?|lakes?|land|landing|lights|locks?|loaf|lodge|manors?|meadows?|mills?|mission|motorway"
        r"|mountains?|orchard|oval|parks?|passage|pike|pines|plaza|ports?|prairie|ranch|rapids?"
        r"|ridges|river|roads|shoals?|shores?|springs|squares|stravenue|stream|streets|summit"
        r"|trace|trafficway|tunnel|turnpike|valleys?|viaduct|villages?|ville|vista|walks|ways"
        r"|wells?|parade|esplanade|approach|broadway|croft|drove|garth|rise|vale|wharf|wynd"
        r")\b\.?",
        # Hauptstraße 5, Kerkstraat 12a, Bahnhofstr. 3
        # (bounded: an unbounded word run backtracks quadratically over "Abc-Abc-Abc-...")
        r"\b[A-ZÄÖÜ][\w'-]{0,30}?(?i:straße|strasse|str\.|weg|gasse|platz|allee|straat|laan|plein"
        r"|gracht|singel|dijk|kade|steeg|vej|gade|gatan|vägen|veien|boulevard|dreef|baan|damm"
        r"|chaussee|-ring)\s+\d{1,5}[a-zA-Z]?\b",
        # Lentokapteenin kuja 268, Dunakeszii utca 225., Bácsszéki út 167., Atatürk Caddesi 5
        # (the kinds in lower case, as these languages write them: "T2 SOR 3" is no street)
        r"\b[A-ZÀ-ÞĀ-ž][^\W\d_]{2,30}\s+(?:kuja|katu|tie|polku|väylä|kaari|utca|út|útja|tér"
        r"|körút|köz|sor|sétány|[Ss]okak|[Ss]okağı|[Ss]k\.|[Cc]addesi|[Cc]ad\.|[Cc]d\.|[Bb]ulvarı"
        r"|ulice|náměstí|třída|nábřeží)\s+\d{1,5}[a-zA-Z]?\b\.?",
        # P.O. Box 123, Postfach 1234
        r"\b(?i:p\.?\s?o\.?\s?box|postfach|postbus|apartado)\s*\d{1,6}\b",
        # 5 rue de la Paix, Via Roma 10, Calle Mayor 5, ul. Marszałkowska 84/92 m. 15
        r"(?:(?<![\w./-])\d{1,5}[a-zA-Z]?,?\s+)?\b(?i:rue|avenue|boulevard|chemin|allée|impasse"
        r"|quai|place|via|viale|piazza|corso|calle|avenida|rua|praça|carrer|plaza|ul\.|paseo"
        r"|avinguda|rambla|camino|carretera|ronda|cours|route|strada|vicolo|largo|travessa|plac"
        r"|aleja|al\.|os\.|osiedle|skwer|rondo|bulwar|alameda|estrada|rodovia|cañada|glorieta"
        r"|pasaje|piazzale|lungomare|contrada|borgo|calea|aleea|bulevardul|str\.|strada|șoseaua"
        r"|sos\.|bd\.|piața)\s+"
        r"(?:(?:de|du|des|la|le|les|del|della|di|da|do|dos|das)\s+|[ld]['’])*"
        r"[A-ZÀ-Ý][\w'’-]*(?:\s+[A-ZÀ-Ý][\w'’-]*){0,3}(?:,?\s+\d{1,5}[a-zA-Z]?\b"
        r"(?:[/-]\d{1,5}[a-zA-Z]?\b)?(?:\s+(?:m\.|lok\.|bis\b|ter\b)\s*\d{0,4}\b)?)?",
    )
)


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Street and settlement words written in lower case before a name or number in Cyrillic,
# Greek, Armenian, Georgian, Polish, Romance and Turkish addresses ("пер. Мельничный, д. 8",
# "шосе Олександрійський, буд. 97", "гр. Пловдив", "გუდამაყრის ქ. 62", "ulica Kopernika 89"):
# inside an address clause they are no prose.
LOWER_ADDRESS_WORDS = _words(
    "ул улица вул вулиця пер переулок провулок пр просп проспект пр-т пл площадь площа наб "
    "набережная набережна бул бульвар б-р ш шоссе шосе алл аллея алея туп тупик проезд проїзд "
    "мкр мкрн микрорайон кв кварт квартира д дом буд будинок корп к стр ст г гр град м с "
    "село смт пгт пос поселок селище хутор хутір станица парк обл область р-н район край жк "
    "клх кп рп нп аул ст-ца узвіз "
    "ulica ul aleja al plac os osiedle ulice náměstí rue via viale piazza calle avenida rua "
    "strada sokak sokağı caddesi mahallesi sk cad mah сквер місто город містечко майдан шлях "
    "лінія линия просіка тракт кільце спуск "
    "οδός οδ λεωφ λεωφόρος πλ πλατεία τκ гр ж.к бл вх ет ап "
    "գ փ փողոց պող պողոտա ք մարզ շ բն ქ ქუჩა გამზ გამზირი ჩიხი შესახვევი "
    "სოფ სოფელი ბინა კორპ no rt rw"
)
# Street and settlement words of Vietnamese, Indonesian and Philippine addresses: one of them
# and a number make the clause after a weak cue an address ("Home: Gg. Monginsidi No. 883").
STREET_WORDS_EAST = _words(
    "đường phố phường quận huyện xã thị tỉnh thành ấp thôn tổ khu khóm số ngõ ngách hẻm "
    "jalan jl gang gg kel kec kab kota desa kelurahan kecamatan kabupaten provinsi "
    "blok perumahan komplek brgy barangay purok sitio"
)
LOWER_ADDRESS_WORDS = LOWER_ADDRESS_WORDS | STREET_WORDS_EAST


# Thai writes the street word against the name ("ถนนเขียวขุ้ย", "ต.บางแคเหนือ"): road, soi,
# village number, subdistrict, district, province (and their short forms).
THAI_ADDRESS_PREFIXES = ("ถนน", "ถ.", "ซอย", "ซ.", "หมู่", "ตำบล", "ต.", "แขวง", "อำเภอ", "อ.",
                         "เขต", "จังหวัด", "จ.")  # fmt: skip
# A street's kind written out in full and capitalised ("1639 81st Street", "Mayon Extension").
_STREET_TYPES = frozenset(("Street", "Avenue", "Road", "Drive", "Lane", "Boulevard", "Extension",
                           "Highway"))  # fmt: skip
# A building and its room ("パーク千束704"), or a number with its block word ("17号", "3丁目").
_CJK_WITH_DIGIT = re.compile(
    r"[\u30a0-\u30ff\u4e00-\u9fff]\d{2,}(?![A-Za-z\d])|\d+(?:号|番|丁目|室|楼|栋|棟|階|번지|호)"
)


def street_words(tokens: list[str]) -> bool:
    """Whether a clause's words name a street as addresses write it, so that after a weak cue
    ("Home:") they and a number are an address: a street word among the first ("ул.",
    "ulica", "Gg."; not one English and clinical text write too: "via", "no", "RT", "os"), a
    street's kind written out ("81st Street"), a Thai street word against its name, or CJK
    with a room or block number ("パーク千束704")."""
    for token in tokens[:4]:
        word = token.rstrip(".,:").lower()
        english = word.isascii() and (len(word) <= 2 or word == "via")
        if word in STREET_WORDS_EAST or (word in LOWER_ADDRESS_WORDS and not english):
            return True
    return any(
        token.startswith(THAI_ADDRESS_PREFIXES)
        or _CJK_WITH_DIGIT.search(token)
        or token.rstrip(".,;") in _STREET_TYPES
        for token in tokens
    )


# US states, Canadian provinces, Australian states, and country codes written after a town.
REGION_CODES = _words(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR "
    "AB BC MB NB NL NS NT NU ON PE QC SK YT NSW VIC QLD SA WA TAS ACT "
    "AS GU VI MP UK GB USA US IE DE FR NL BE CH AT IT ES PT SE NO DK FI PL CZ"
)
COUNTRIES = _words(
    "england scotland wales ireland germany deutschland france netherlands nederland belgium "
    "belgique switzerland schweiz suisse austria österreich italy italia spain españa portugal "
    "sweden sverige norway norge denmark danmark finland suomi poland polska canada australia "
    "usa america"
)


# "strong" cues say the words after them are a place; "home:" and "residence" may as well
# be followed by home medication or a care setting, so they need a street, a postcode or a `*`.
ADDRESS_CUE = re.compile(
    r"(?i)(?=[lrdhawimđtncem])\b(?:(?P<strong>(?:lives?|living|resides?|residing|resident|domiciled?)\s+(?:at|in|on)"
    r"|home\s+address|address(?:e)?|addr\.?|anschrift|wohnhaft(?:\s+in)?|wohnort|domicile"
    r"|domicilio|indirizzo|direcci[oó]n|morada|woonadres|adres|alamat|địa\s+chỉ|tirahan)"
    r"|residence|(?-i:[Hh]ome)\s*:|next\s+of\s+kin|(?-i:NOK|[Nn]ok)\b|emergency\s+contact"
    r"|correspondence(?:\s+to)?|c/o|care\s+of|(?:moved|relocated)\s+to)"
    r"[ \t]*[:\-]?[ \t]*(?:(?<=ss )(?:is|was)[ \t]+)?"
)
CUE_HINT = re.compile(  # cheap look-ups (with UNIT_HINT): most text skips the cue patterns
    r"(?i)(?=[lrdhawimđtncem])(?:liv|resid|domic|home|addr|adres|anschrift|wohn|indiriz|direcc"
    r"|morada|alamat|địa chỉ|tirahan|next\s+of|nok|emergency|correspond|c/o|care\s+of|moved"
    r"|relocated)"
)
UNIT_HINT = re.compile(r"(?i)(?=[afws])(?:apt|apartment|flat|appartement|wohnung|studio)")
# A short capitalised abbreviation or initial inside an address, a name or number next:
# "Jalan Jend. A. Yani No. 482", "Gang H.J. Maemunah".
ABBREVIATION_NEXT = re.compile(r"[A-Z][\w.]{0,4}\.[ \t]+[A-Z0-9]")
# Words in the clause after a cue: Vietnamese writes a syllable a word ("Số 1 Đường Hoàng
# Hoa Thám Xã Long Bình tỉnh Bắc Ninh 94163" is 13).
CLAUSE_WORDS = 16
