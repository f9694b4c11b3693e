"""The character table behind the name key, derived from Unicode's character database.

The name key (``name_key.py`` in Python, ``dbt/macros/name_key.sql`` in every warehouse) folds
a name one character at a time through this table, so each implementation gives the same key
whatever Unicode version its runtime ships: the table is generated once, committed
(``name_key_characters.csv``, the dbt seed of the same name is a link to it) and read by both.

Two folds per character:

- **symbol fold**: compatibility decomposition (NFKD) and full case folding, repeated until
  stable; control characters and every kind of space become one ASCII space; invisible
  characters (format controls such as zero-width and bidi marks, variation selectors, fillers)
  disappear. Letters keep their accents here, as combining marks.
- **letter fold** (applied to symbol-folded text): accents go (the combining diacritical marks
  of Latin, Greek and Cyrillic, Hebrew and Arabic vowel points, letters with a stroke such as
  ``ø`` and ``ł``), letters,
  digits and the marks of other scripts (Thai vowels, Devanagari signs, kana voicing) stay,
  everything else (punctuation, symbols, emoji) becomes a space.

Regenerate with ``python -m music_platform.identity.characters`` (the test suite checks the
committed file against this code on the Unicode version it was generated with).
"""

from __future__ import annotations

import csv
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from music_platform.identity.name_key import TABLE_PATH, VALUE_PREFIX

# The Unicode version the committed table was generated from (Python 3.11's unicodedata).
TABLE_UNICODE_VERSION = "14.0.0"

# Accents: the combining diacritical mark blocks used by Latin, Greek and Cyrillic, and the
# optional vowel points of Hebrew and Arabic (names are written with and without them), with
# the Arabic tatweel that only stretches a word. The marks that spell other scripts are not
# accents (Thai vowels, Devanagari signs, kana voicing marks) and stay.
ACCENT_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
    (0x0591, 0x05BD),  # Hebrew cantillation and points
    (0x05BF, 0x05BF),
    (0x05C1, 0x05C2),
    (0x05C4, 0x05C5),
    (0x05C7, 0x05C7),
    (0x0610, 0x061A),  # Arabic honorific and Quranic marks
    (0x0640, 0x0640),  # Arabic tatweel
    (0x064B, 0x065F),  # Arabic harakat
    (0x0670, 0x0670),
    (0x06D6, 0x06DC),
    (0x06DF, 0x06E4),
    (0x06E7, 0x06E8),
    (0x06EA, 0x06ED),
)
# Letters with a stroke or a ligature that decomposition leaves alone but that people type
# without the mark (``Mø`` as ``Mo``, ``Łódź`` as ``Lodz``).
LETTERS_WITHOUT_MARK = {
    "ø": "o",
    "đ": "d",
    "ł": "l",
    "ħ": "h",
    "ŧ": "t",
    "ı": "i",
    "ƀ": "b",
    "ƶ": "z",
    "ǥ": "g",
    "ɨ": "i",
    "ʉ": "u",
    "æ": "ae",
    "œ": "oe",
    "þ": "th",
    "ð": "d",
}
# Invisible characters that are not format controls (category Cf, removed as a class):
# variation selectors, Mongolian free variation selectors, the combining grapheme joiner and
# the Hangul fillers that render as nothing.
INVISIBLE_RANGES = (
    (0xFE00, 0xFE0F),
    (0xE0100, 0xE01EF),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
)


def _in_ranges(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


def _kept_as_is(char: str) -> bool:
    """Unassigned, private-use and surrogate code points: not in the table, so kept unchanged."""
    return unicodedata.category(char) in ("Cn", "Co", "Cs")


def symbol_fold(char: str) -> str:
    if _kept_as_is(char):
        return char
    if _in_ranges(char, INVISIBLE_RANGES) or unicodedata.category(char) == "Cf":
        return ""
    if unicodedata.category(char) == "Cc" or unicodedata.category(char).startswith("Z"):
        return " "
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
    if folded == char:
        return char
    # Folding may produce characters that fold further (a space from a spacing accent, a
    # capital from a compatibility form): fold those too until nothing changes.
    return "".join(symbol_fold(part) if part != char else part for part in folded)


def letter_fold(folded_char: str) -> str:
    """The letter fold of one character of symbol-folded text."""
    if _kept_as_is(folded_char) or folded_char == " ":
        return folded_char
    if _in_ranges(folded_char, ACCENT_RANGES):
        return ""
    if folded_char in LETTERS_WITHOUT_MARK:
        return LETTERS_WITHOUT_MARK[folded_char]
    if unicodedata.category(folded_char)[0] in "LNM":
        return folded_char
    return " "


def character_rows() -> Iterator[tuple[int, str, str]]:
    """(code point, symbol fold, letter fold) of every character whose folds change it.

    U+0000 is left out: no warehouse stores it in text (the Python rule treats it as the
    control character it is).
    """
    for code in range(1, sys.maxunicode + 1):
        char = chr(code)
        if _kept_as_is(char):
            continue
        symbol = symbol_fold(char)
        letters = "".join(letter_fold(part) for part in symbol)
        if symbol != char or letters != char:
            yield code, symbol, letters


def write_table(path: Path = TABLE_PATH) -> int:
    rows = list(character_rows())
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["code_point", "symbol_fold", "letter_fold"])
        for code, symbol, letters in rows:
            writer.writerow([code, VALUE_PREFIX + symbol, VALUE_PREFIX + letters])
    return len(rows)


if __name__ == "__main__":
    if unicodedata.unidata_version != TABLE_UNICODE_VERSION:
        raise SystemExit(
            f"this Python has Unicode {unicodedata.unidata_version}; the table is generated from "
            f"{TABLE_UNICODE_VERSION} (Python 3.11). Change TABLE_UNICODE_VERSION on purpose to move it."
        )
    print(f"{write_table()} characters written to {TABLE_PATH}")
