"""Name matching for the cold-start endpoint: case-insensitive and accent-insensitive."""

from __future__ import annotations

import re
import unicodedata

# Letters that Unicode decomposition leaves alone but that people type without the mark.
_FOLD_LETTERS = str.maketrans(
    {"ø": "o", "đ": "d", "ł": "l", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d", "ı": "i", "ħ": "h", "ŧ": "t"}
)
_SPACES = re.compile(r"\s+")


def normalize_name(text: str) -> str:
    """'  Sigur Rós ' and 'sigur ros' give the same key; so do 'Motörhead' and 'MOTORHEAD'."""
    if text.isascii():  # most names: no marks to strip, and ASCII casefold is lower
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(_FOLD_LETTERS)
    return _SPACES.sub(" ", stripped).strip()
