"""CTP's value arithmetic, reproduced exactly: hashes, UIDs, dates, names, ages, ciphers.

Sites that move from CTP must get the same pseudonyms CTP gives, so every function here
follows CTP's AnonymizerFunctions (and the org.rsna.util helpers it calls) to the digit:
an MD5 read as an unsigned big-endian integer and written in decimal; a UID prefix that
gains a '.', a '9' before a hash that starts with '0', a cut at 64 characters; Java's
lenient GregorianCalendar for date arithmetic (month 13 is January of the next year).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from datetime import datetime, timedelta

UID_MAX_LENGTH = 64
INT_MAX = 2**31 - 1


def us_md5(text: str) -> str:
    """MD5 of the UTF-8 text as an unsigned decimal integer (CTP DigestUtil.getUSMD5)."""
    return str(int.from_bytes(hashlib.md5(text.encode("utf-8")).digest(), "big"))


def ctp_hash(text: str | None, maxlen: int = INT_MAX) -> str:
    """@hash: the decimal MD5, cut to `maxlen` digits (maxlen < 1: no cut)."""
    if text is None:
        text = "null"
    if maxlen < 1:
        maxlen = INT_MAX
    return us_md5(text)[:maxlen]


def hash_ptid(siteid: str | None, ptid: str | None, maxlen: int = INT_MAX) -> str:
    """@hashptid: the hash of `[siteid]ptid`, both trimmed."""
    site = (siteid or "").strip()
    patient = "null" if ptid is None else ptid.strip()
    return ctp_hash(f"[{site}]{patient}", maxlen)


def hash_uid(prefix: str, uid: str) -> str:
    """@hashuid: prefix + '.' + decimal MD5 of the UID ('9' first if it starts with 0)."""
    prefix = prefix.strip()
    if prefix and not prefix.endswith("."):
        prefix += "."
    digits = us_md5(uid)
    extra = "9" if digits.startswith("0") else ""
    return (prefix + extra + digits)[:UID_MAX_LENGTH]


def hash_name(text: str, length: int, word_count: int) -> str:
    """@hashname: the hash of the first words of a PN, upper case, without separators."""
    if word_count <= 0:
        word_count = INT_MAX
    words = java_split(text, r"\^")
    joined = "".join(words[:word_count])
    return ctp_hash(re.sub(r"[\s,'^.]", "", joined).upper(), length)


def hashdate_increment(unhashed: str) -> int:
    """@hashdate's day offset: minus (the last 4 hash digits modulo 3650), never 0."""
    digits = ctp_hash(unhashed, -1)
    if len(digits) > 4:
        digits = digits[-4:]
    inc = -(int(digits) % (10 * 365))
    return -1 if inc == 0 else inc


def initials(name: str | None) -> str:
    """@initials: first letters of the name's words, the family name's moved last."""
    if name is None:
        return "X"
    text = re.sub(r"\s+", " ", name.replace("^", " ").replace(",", " ")).strip()
    if not text:
        return "X"
    letters = []
    i = 0
    while True:
        letters.append(text[i])
        i = text.find(" ", i) + 1
        if i == 0:
            break
    out = "".join(letters)
    if len(out) > 1:
        out = out[1:] + out[0]
    return out.upper()


def caesar(text: str, offset: int) -> str:
    """The Caesar shift of @initials' second argument (letters mod 26, digits mod 10)."""
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr(ord("a") + _java_mod(ord(c) - ord("a") + offset, 26)))
        elif "A" <= c <= "Z":
            out.append(chr(ord("A") + _java_mod(ord(c) - ord("A") + offset, 26)))
        elif "0" <= c <= "9":
            out.append(chr(ord("0") + _java_mod(ord(c) - ord("0") + offset, 10)))
        else:
            out.append(c)
    return "".join(out)


def _java_mod(value: int, base: int) -> int:
    k = math.fmod(value, base)
    return int(k + base if k < 0 else k)


def round_age(age: str | None, width: int) -> str:
    """@round: an age string rounded to a multiple of `width`, unit kept, even length."""
    if age is None:
        return ""
    age = age.strip()
    if not age:
        return ""
    number = float(re.sub(r"\D", "", age))  # raises on no digits, as Java does
    rounded = math.floor(java_float(number / width) + 0.5) * width
    result = str(rounded) + re.sub(r"\d", "", age)
    if len(result) & 1:
        result = "0" + result
    return result


def java_float(value: float) -> float:
    """A double narrowed to a Java float (CTP does the age arithmetic in float)."""
    import struct

    return float(struct.unpack("f", struct.pack("f", value))[0])


def java_int(text: str | None) -> int:
    """Integer.parseInt: optional sign and ASCII digits only, 32 bits; else ValueError."""
    if text is None or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError("not an integer")
    value = int(text)
    if not -(2**31) <= value <= INT_MAX:
        raise ValueError("out of int range")
    return value


def java_long(text: str | None) -> int:
    if text is None or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError("not a long")
    return int(text)


def java_split(text: str, pattern: str) -> list[str]:
    """String.split: trailing empty strings removed (a whole empty text gives [""])."""
    if text == "":
        return [""]
    parts = re.split(pattern, text)
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


def java_replace_all(text: str, regex: str, replacement: str) -> str:
    """String.replaceAll, with Java's `$n` group references and `\\` escapes."""
    out: list[str] = []
    i = 0
    while i < len(replacement):
        c = replacement[i]
        if c == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1].replace("\\", "\\\\"))
            i += 2
        elif c == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            out.append(f"\\g<{replacement[i + 1]}>")
            i += 2
        else:
            out.append("\\\\" if c == "\\" else c)
            i += 1
    return re.sub(regex, "".join(out), text)


# -- dates: Java's lenient GregorianCalendar -------------------------------------------------


def _calendar(date: str) -> datetime:
    """DateUtil.getCalendar: separators dropped, '00' years read as 19xx, time optional."""
    text = re.sub(r"[@:T\-\s]", "", date)
    if text.startswith("00"):
        text = "19" + text[2:]
    cut = text.find("\\")
    if cut != -1:
        text = text[:cut]
    if len(text) < 8:
        raise ValueError("short date")
    year, month, day = java_int(text[0:4]), java_int(text[4:6]), java_int(text[6:8])
    hour = minute = second = 0
    if len(text) > 8:
        time = text[8:]
        if "&" in time:
            time = time[: time.index("&")]
        if len(time) < 4:
            raise ValueError("short time")
        hour, minute = java_int(time[0:2]), java_int(time[2:4])
        if len(time) > 4:
            second = int(_java_parse_float(time[4:]))
    return _lenient(year, month - 1, day, hour, minute, second)


def _java_parse_float(text: str) -> float:
    if not re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?\s*", text):
        raise ValueError("not a float")
    return float(text.strip().rstrip("fFdD"))


def _lenient(year: int, month0: int, day: int, hour: int = 0, minute: int = 0,
             second: int = 0) -> datetime:  # fmt: skip
    """A date from possibly out-of-range fields, rolled over as GregorianCalendar does."""
    year += month0 // 12
    month0 %= 12
    base = datetime(year, month0 + 1, 1)
    return base + timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)


def _format(moment: datetime, date: str) -> str:
    iso = "-" in date
    dlen = 10 if iso else 8
    sep = "-" if iso else ""
    return (
        f"{moment.year:04d}{sep}{moment.month:02d}{sep}{moment.day:02d}"
        + (date[dlen:] if len(date) > dlen else "")
    )


def increment_date(date: str, days: int) -> str:
    """AnonymizerFunctions.incrementDate: the date moved by whole days, the rest kept."""
    moment = _calendar(date)
    return _format(moment + timedelta(days=_to_java_int(days)), date)


def _to_java_int(value: int) -> int:
    """The (int) cast CTP applies to a long day count."""
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def modify_date(date: str, year: int, month: int, day: int) -> str:
    """AnonymizerFunctions.modifyDate: fields set where >= 0, kept where negative."""
    moment = _calendar(date)
    y = moment.year if year < 0 else year
    m0 = moment.month - 1 if month < 0 else month - 1
    d = moment.day if day < 0 else day
    return _format(_lenient(y, m0, d, moment.hour, moment.minute, moment.second), date)


def days_between(date: str, base_mdy: str) -> int:
    """@dateinterval: days from `base_mdy` (M/d/yyyy) to the first 8 characters of `date`."""
    text = date[:8]
    moment = _lenient(java_int(text[0:4]), java_int(text[4:6]) - 1, java_int(text[6:8]))
    match = re.fullmatch(r"\s*(\d+)/(\d+)/(\d+)(.*)", base_mdy, re.S)
    if match is None:
        raise ValueError("base date is not M/d/yyyy")
    month, day, year = (int(g) for g in match.groups()[:3])
    base = _lenient(year, month - 1, day)
    return round((moment - base).total_seconds() / 86400)


def now_date(separator: str) -> str:
    now = datetime.now()
    return f"{now.year:04d}{separator}{now.month:02d}{separator}{now.day:02d}"


def now_time(separator: str) -> str:
    now = datetime.now()
    return f"{now.hour:02d}{separator}{now.minute:02d}{separator}{now.second:02d}"


# -- @encrypt / @decrypt: Blowfish (ECB, PKCS#5), key from CTP's padded base-64 rule -------

_NONCE = "tszyihnnphlyeaglle"


def _encryption_key(key_text: str | None, size: int = 128) -> bytes:
    text = re.sub(r"[^a-zA-Z0-9+/]", "", (key_text or "").strip())
    required = (size + 5) // 6
    group_chars = 4 * ((required + 3) // 4)
    while len(text) < required:
        text += _NONCE
    text = (text[:required] + "===")[:group_chars]
    return base64.b64decode(text)


def _blowfish(key: bytes, encrypt: bool, data: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    cipher = Cipher(Blowfish(key), modes.ECB())
    if encrypt:
        padder = padding.PKCS7(64).padder()
        padded = padder.update(data) + padder.finalize()
        enc = cipher.encryptor()
        return enc.update(padded) + enc.finalize()
    dec = cipher.decryptor()
    plain = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(64).unpadder()
    return unpadder.update(plain) + unpadder.finalize()


def encrypt(text: str | None, key_text: str | None) -> str:
    """@encrypt: Blowfish of the UTF-8 text, in base 64."""
    data = ("null" if text is None else text).encode("utf-8")
    return base64.b64encode(_blowfish(_encryption_key(key_text), True, data)).decode("ascii")


def decrypt(text: str | None, key_text: str | None) -> str:
    """@decrypt: the inverse of @encrypt."""
    data = base64.b64decode(("null" if text is None else text).encode("ascii"))
    return _blowfish(_encryption_key(key_text), False, data).decode("utf-8")
