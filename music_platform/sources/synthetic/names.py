"""Names of artists, tracks, albums and users, built from Faker's locale data.

Calling Faker once per name costs ~0.1 ms and 12k+ tracks need several names each, so the
word and person-name lists of Faker's locale providers are read once and combined here with
a seeded numpy generator: the same seed and Faker version give the same names, in
milliseconds. Several locales give non-ASCII names (Cyrillic, Japanese, Turkish, accents),
as in the real Kaggle file and on Last.fm.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# fmt: off
# Locales of person names: artists draw from all, usernames only from the ASCII-clean part.
PERSON_LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "sv_SE", "it_IT", "nl_NL", "fi_FI", "ru_RU", "uk_UA", "ja_JP",
    "ko_KR", "tr_TR", "es_ES", "es_MX", "es_AR", "pt_BR", "pl_PL",
)
# Where solo artists of a non-Latin genre come from (weights).
SOLO_LOCALE_WEIGHTS = {
    "en_US": 0.45, "en_GB": 0.2, "de_DE": 0.05, "fr_FR": 0.04, "sv_SE": 0.04, "it_IT": 0.03, "nl_NL": 0.03,
    "fi_FI": 0.02, "ru_RU": 0.03, "ja_JP": 0.03, "ko_KR": 0.02, "tr_TR": 0.02, "es_ES": 0.02, "pt_BR": 0.02,
}
LATIN_LOCALE_WEIGHTS = {"es_ES": 0.3, "es_MX": 0.25, "es_AR": 0.15, "pt_BR": 0.3}
COMPOSER_LOCALE_WEIGHTS = {"de_DE": 0.35, "it_IT": 0.2, "fr_FR": 0.15, "ru_RU": 0.15, "en_GB": 0.1, "pl_PL": 0.05}
# fmt: on

# Function words make poor titles ("The Abouts"); words shorter than four letters are dropped too.
_STOP_WORDS = frozenset(
    """about above according across after again against almost along already also although always among
    another anyone anything around because been before behind being below between both could does down
    during each either else enough even ever every from have here herself himself however into itself just
    least less many might more most much must myself neither never often once only other others over
    perhaps quite rather really same several should since some someone something sometimes such than that
    their them themselves then there these they this those though through throughout thus toward under
    until upon very were what whatever when where whether which while whole whom whose with within without
    would your yourself yeah""".split()
)
# fmt: off
_DARK_WORDS = (
    "Iron", "Blood", "Shadow", "Night", "Storm", "Fire", "Grave", "Steel", "Wolf", "Black", "Death", "Throne",
    "Doom", "Frost", "Abyss", "Serpent", "Ash", "Bone", "Crypt", "Raven", "Void", "Plague", "Obsidian", "Wrath",
    "Chaos", "Skull", "Thorn", "Hammer", "Storm", "Venom", "Eclipse", "Inferno", "Sorrow", "Winter", "Dragon",
    "Oath", "Rune", "Specter", "Tomb", "Blade",
)
_SYLLABLES = (
    "ka", "ra", "mi", "lo", "ze", "tor", "vex", "nox", "lu", "sa", "ko", "rin", "tek", "zo", "fa", "ly", "dro",
    "mo", "ne", "qui", "xa", "vo", "sol", "tri", "bel", "jun", "pha", "sy", "ion", "den",
)
_CITIES = (
    "Berlin", "Vienna", "London", "Boston", "Chicago", "Prague", "Leipzig", "Dresden", "Munich", "Oslo",
    "Helsinki", "Stockholm", "Warsaw", "Budapest", "Paris", "Lyon", "Milan", "Rome", "Madrid", "Lisbon",
    "Amsterdam", "Rotterdam", "Zurich", "Geneva", "Montreal", "Toronto", "Sydney", "Tokyo", "Seoul", "Moscow",
)
_KEYS = ("C", "C-Sharp", "D", "E-Flat", "E", "F", "F-Sharp", "G", "A-Flat", "A", "B-Flat", "B")
_TEMPI = ("Allegro", "Adagio", "Andante", "Presto", "Largo", "Allegretto", "Moderato", "Vivace", "Scherzo", "Rondo")
_ROMAN = ("I", "II", "III", "IV", "V")
# fmt: on
_FORMS = ("Symphony", "Piano Sonata", "String Quartet", "Piano Concerto", "Violin Concerto", "Cello Sonata")
_SMALL_WORDS = frozenset({"of", "the", "in", "and", "a", "to", "on", "for", "at", "de", "la", "el", "y", "en"})


def _strings(value: object) -> tuple[str, ...]:
    if value is None or isinstance(value, property):
        return ()
    return tuple(str(v) for v in (value.keys() if isinstance(value, dict) else value))


def _first_of(provider: type, *attributes: str) -> tuple[str, ...]:
    for attribute in attributes:
        values = _strings(getattr(provider, attribute, None))
        if len(values) > 1:
            return values
    return ()


@dataclass(frozen=True)
class PersonPool:
    male: tuple[str, ...]
    female: tuple[str, ...]
    last_male: tuple[str, ...]
    last_female: tuple[str, ...]
    family_first: bool  # Japanese/Korean order: family name first
    joined: bool  # Korean: no space between family and given name


@dataclass(frozen=True)
class NamePools:
    persons: dict[str, PersonPool]
    english_words: tuple[str, ...]
    spanish_words: tuple[str, ...]
    japanese_words: tuple[str, ...]


@lru_cache(maxsize=1)
def name_pools() -> NamePools:
    persons: dict[str, PersonPool] = {}
    for locale in PERSON_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        male = _first_of(provider, "first_names_male", "first_names")
        female = _first_of(provider, "first_names_female", "first_names")
        last_male = _first_of(provider, "last_names_male", "male_last_names", "last_names")
        last_female = _first_of(provider, "last_names_female", "female_last_names", "last_names") or last_male
        persons[locale] = PersonPool(
            male, female, last_male, last_female, family_first=locale in ("ja_JP", "ko_KR"), joined=locale == "ko_KR"
        )

    def lorem(locale: str) -> tuple[str, ...]:
        return tuple(importlib.import_module(f"faker.providers.lorem.{locale}").Provider.word_list)

    english = tuple(w for w in lorem("en_US") if len(w) >= 4 and w not in _STOP_WORDS and w.isalpha())
    spanish = tuple(w for w in lorem("es_ES") if len(w) >= 4 and w.isalpha())
    return NamePools(persons, english, spanish, lorem("ja_JP"))


def title_case(text: str) -> str:
    """Title case as Last.fm catalogues write it: small words stay lower inside a title."""
    words = text.split(" ")
    out = []
    for i, word in enumerate(words):
        if i > 0 and word.lower() in _SMALL_WORDS:
            out.append(word.lower())
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out)


def plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


class NameFactory:
    """Draws names from the pools with one seeded generator (call order fixes the output)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.pools = name_pools()

    # -- primitives -------------------------------------------------------------------
    def _pick(self, values: tuple[str, ...]) -> str:
        return values[int(self.rng.integers(len(values)))]

    def _locale(self, weights: dict[str, float]) -> str:
        names = list(weights)
        p = np.array([weights[n] for n in names])
        return names[int(self.rng.choice(len(names), p=p / p.sum()))]

    def word(self) -> str:
        return self._pick(self.pools.english_words).capitalize()

    def person(self, locale: str, female: bool) -> str:
        pool = self.pools.persons[locale]
        first = self._pick(pool.female if female else pool.male)
        last = self._pick(pool.last_female if female else pool.last_male)
        if pool.family_first:
            return f"{last}{first}" if pool.joined else f"{last} {first}"
        return f"{first} {last}"

    def first_name(self, locale: str, female: bool) -> str:
        pool = self.pools.persons[locale]
        return self._pick(pool.female if female else pool.male)

    # -- artists ----------------------------------------------------------------------
    def artist(self, style: str) -> tuple[str, str, str]:
        """(name, vocal, locale); vocal is female/male/group/none and drives a few tags."""
        r = self.rng.random()
        female = bool(self.rng.random() < 0.4)
        vocal = "female" if female else "male"
        if style == "solo":
            locale = self._locale(SOLO_LOCALE_WEIGHTS)
            return self.person(locale, female), vocal, locale
        if style == "latin":
            locale = self._locale(LATIN_LOCALE_WEIGHTS)
            if r < 0.8:
                return self.person(locale, female), vocal, locale
            spanish = self._pick(self.pools.spanish_words)
            last = self._pick(self.pools.persons[locale].last_male)
            return (f"Los {plural(spanish).capitalize()}" if r < 0.9 else f"Grupo {last}"), "group", locale
        if style == "composer":
            locale = self._locale(COMPOSER_LOCALE_WEIGHTS)
            return self.person(locale, bool(self.rng.random() < 0.15)), "none", locale
        if style == "orchestra":
            city = self._pick(_CITIES)
            kind = ("Philharmonic Orchestra", "Symphony Orchestra", "Chamber Ensemble", "String Quartet")[int(r * 4)]
            if kind == "String Quartet":
                return f"{self._pick(self.pools.persons['de_DE'].last_male)} {kind}", "none", "de_DE"
            return f"{city} {kind}", "none", "en_GB"
        if style == "ensemble":
            kind = ("Trio", "Quartet", "Quintet", "Big Band", "Ensemble")[int(r * 5)]
            return f"{self.person('en_US', female)} {kind}", "group", "en_US"
        if style == "band_the":
            return f"The {plural(self.word())}", "group", "en_US"
        if style == "two_words":
            if r < 0.15:
                return f"{self.first_name('en_US', female)} and the {plural(self.word())}", "group", "en_US"
            return f"{self.word()} {self.word()}", "group", "en_US"
        if style == "one_word":
            if r < 0.2:  # stylised acronyms (MGMT, HAIM)
                letters = "".join(chr(65 + int(i)) for i in self.rng.integers(0, 26, size=int(self.rng.integers(3, 5))))
                return letters, "group", "en_US"
            return self.word(), vocal, "en_US"
        if style == "rap":
            prefix = ("Lil", "Young", "MC", "Big", "Kid")[int(r * 5)]
            tail = self.first_name("en_US", False) if prefix == "Young" else self.word()
            return f"{prefix} {tail}", "male", "en_US"
        if style == "invented":
            n = int(self.rng.integers(2, 4))
            word = "".join(self._pick(_SYLLABLES) for _ in range(n)).capitalize()
            if r < 0.15:
                word += " & " + "".join(self._pick(_SYLLABLES) for _ in range(2)).capitalize()
            return word, "none", "en_US"
        if style == "dj":
            tail = self.first_name("en_US", female) if r < 0.5 else self.word()
            return f"DJ {tail}", vocal, "en_US"
        if style == "dark":
            a, b = self._pick(_DARK_WORDS), self._pick(_DARK_WORDS)
            if r < 0.4:
                return f"{a}{b.lower()}", "group", "en_US"
            if r < 0.7:
                return f"{a} {self.word()}", "group", "en_US"
            return f"{plural(a)} of {b}", "group", "en_US"
        raise ValueError(f"unknown artist name style {style!r}")

    # -- tracks and albums ------------------------------------------------------------
    def track_title(self, genre: str, locale: str) -> str:
        r = self.rng.random()
        if genre == "classical":
            form = self._pick(_FORMS)
            number, opus = int(self.rng.integers(1, 10)), int(self.rng.integers(1, 130))
            key, mode = self._pick(_KEYS), ("Major", "Minor")[int(r * 2)]
            movement = int(self.rng.integers(0, 4))
            return f"{form} No. {number} in {key} {mode}, Op. {opus}: {_ROMAN[movement]}. {self._pick(_TEMPI)}"
        if locale == "ja_JP" and r < 0.7:
            return "".join(self._pick(self.pools.japanese_words) for _ in range(int(self.rng.integers(1, 3))))
        if genre == "latin" and r < 0.75:
            words = [self._pick(self.pools.spanish_words) for _ in range(int(self.rng.integers(1, 4)))]
            lead = ("", "Mi ", "La ", "El ", "Te ")[int(self.rng.integers(0, 5))]
            return title_case(lead + " ".join(words))
        w = self.word
        if r < 0.2:
            return w()
        if r < 0.48:
            return f"{w()} {w()}"
        if r < 0.56:
            return f"The {w()}"
        if r < 0.63:
            return title_case(f"{w()} of the {w()}")
        if r < 0.68:
            return title_case(f"{w()} in the {w()}")
        if r < 0.78:
            return f"{w()} {w()} {w()}"
        if r < 0.82:
            return f"{w()}, {w()}"  # comma: quoted in the CSV
        if r < 0.88:
            return f"{w()} Me" if r < 0.85 else f"Don't {w()}"
        if r < 0.93:
            return f"{w()} ({w()})"
        if r < 0.98:
            return f"{w()} - {('Acoustic', 'Live', 'Radio Edit', 'Demo')[int(self.rng.integers(0, 4))]}"
        return f'{w()} - From "{w()} {w()}"'  # doubled quotes in the CSV

    def album_title(self, genre: str, locale: str) -> str:
        r = self.rng.random()
        if genre == "classical":
            return f"{plural(self._pick(_FORMS))}, Vol. {int(self.rng.integers(1, 6))}"
        if r < 0.55:
            return self.track_title("pop" if genre == "classical" else genre, locale)
        if r < 0.7:
            return f"{self.word()}, {self.word()} and {self.word()}"  # comma: quoted in the CSV
        if r < 0.8:
            return f"{self.word()} (Deluxe Edition)"
        if r < 0.88:
            return f"Live at {self._pick(_CITIES)}"
        return f"{self.word()} {self.word()}"

    # -- users ------------------------------------------------------------------------
    def username(self) -> str:
        """Last.fm-like: 2-15 chars, letters, digits, '_' or '-', starting with a letter."""
        pool = self.pools.persons[("en_US", "en_GB", "de_DE", "sv_SE", "nl_NL", "fi_FI")[int(self.rng.integers(0, 6))]]
        female = bool(self.rng.random() < 0.45)
        first = self._pick(pool.female if female else pool.male)
        last = self._pick(pool.last_female if female else pool.last_male)
        word = self._pick(self.pools.english_words)
        r = self.rng.random()
        if r < 0.22:
            name = f"{first.lower()}{int(self.rng.integers(1970, 2010))}"
        elif r < 0.4:
            name = f"{first}{last}"  # IvanMalison
        elif r < 0.55:
            name = f"{word}_" if r < 0.47 else f"{word}{self._pick(self.pools.english_words)}"  # frikandel_
        elif r < 0.7:
            name = f"{first[0].lower()}{last.lower()}"
        elif r < 0.85:
            name = f"{first}{int(self.rng.integers(1, 100))}"
        else:
            name = f"{word.capitalize()}-{last}"
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        name = re.sub(r"[^A-Za-z0-9_-]", "", ascii_name)[:15]
        return name if len(name) >= 2 and name[0].isalpha() else f"user{name}"[:15]
