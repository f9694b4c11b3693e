"""The name key: one identity rule for artist and track names, the same in Python and in every
warehouse, never empty for a name in any script or made of symbols only.

The conformance corpus (``data/name_key_corpus.json``) lists names in many scripts, symbol-only
names, combining marks, full-width forms, zero-width and bidi controls, emoji and names that
differ only in case or accents, each with its key. Python must give those keys, and the dbt
macro must give Python's key for every corpus entry and for random strings over all of Unicode,
on DuckDB, PostgreSQL and Snowflake (fakesnow).
"""

from __future__ import annotations

import csv
import json
import random
import sys
import unicodedata
import uuid
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from music_platform.config import Settings
from music_platform.identity import name_key, name_key_or_blank
from music_platform.identity.characters import TABLE_UNICODE_VERSION, character_rows
from music_platform.identity.name_key import TABLE_PATH, VALUE_PREFIX
from music_platform.warehouse import connect_warehouse
from music_platform_tests.dbt_runner import SNOWFLAKE_ENV, compile_inline, run_dbt

CORPUS_PATH = Path(__file__).with_name("data") / "name_key_corpus.json"
CORPUS = json.loads(CORPUS_PATH.read_text(encoding="utf-8"))["entries"]
GROUPS = {entry["group"] for entry in CORPUS}


def test_the_corpus_covers_every_kind_of_name_the_rule_promises():
    assert GROUPS >= {
        "latin", "scripts", "symbols_only", "combining_marks", "full_width", "invisible_and_bidi", "emoji",
        "case_and_accents",
    }  # fmt: skip
    names = {entry["name"] for entry in CORPUS}
    scripts = {unicodedata.name(ch).split()[0] for name in names for ch in name if ch.isalpha()}
    assert scripts >= {
        "LATIN",
        "CYRILLIC",
        "GREEK",
        "CJK",
        "HIRAGANA",
        "KATAKANA",
        "HANGUL",
        "ARABIC",
        "HEBREW",
        "THAI",
    }


@pytest.mark.parametrize("entry", CORPUS, ids=[f"{e['group']}:{e['name']!a}" for e in CORPUS])
def test_python_gives_every_corpus_name_its_key(entry):
    assert name_key(entry["name"]) == entry["key"]


def test_spellings_of_one_name_share_a_key_and_different_names_do_not():
    same = [
        ("Beyoncé", "BEYONCE", "Beyonce\u0301", "Bey\u200boncé", "ＢＥＹＯＮＣＥ"),
        ("Анжела Рожкова", "АНЖЕЛА РОЖКОВА", "  Анжела  Рожкова "),
        ("ゲスの極み乙女", "ｹﾞｽの極み乙女"),
        ("고시우", unicodedata.normalize("NFD", "고시우")),  # macOS writes Hangul decomposed
        ("שָׁלוֹם", "שלום"),
        ("❤️", "❤"),
        ("Straße", "STRASSE"),
    ]
    for spellings in same:
        assert len({name_key(s) for s in spellings}) == 1, spellings
    different = [
        *("!!!", "!!!!", "???", "+/-", "-/+", "がか", "かか", "周杰倫", "高橋 優", "清水 拓真", "고시우", "방탄소년단"),
        *("Анжела Рожкова", "Земфира", "คาราบาว", "ปาล์มมี่", "עומר אדם", "عمرو دياب", "🎵", "🎵🎶", "★", "☆"),
    ]
    assert len({name_key(s) for s in different}) == len(different)


def test_blank_names_have_no_key():
    with pytest.raises(ValueError):
        name_key("")
    assert name_key_or_blank(None) == name_key_or_blank(float("nan")) == name_key_or_blank("  ") == ""
    assert name_key_or_blank(" Björk ") == "bjork"


@settings(max_examples=1000, deadline=None)
@given(st.text(min_size=1))
def test_the_key_of_any_name_is_never_empty_and_keys_are_their_own_keys(name):
    key = name_key(name)
    assert key
    assert name_key(key) == key


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" -()[]thefaurlivmxTHE.'!&\u200b\u0301é")), min_size=1))
def test_version_notes_and_credits_never_leave_a_key_that_changes_again(name):
    key = name_key(name)
    assert key and name_key(key) == key


@pytest.mark.skipif(
    unicodedata.unidata_version != TABLE_UNICODE_VERSION,
    reason=f"the character table is generated from Unicode {TABLE_UNICODE_VERSION} (Python 3.11)",
)
def test_the_committed_character_table_is_what_the_generator_writes():
    with TABLE_PATH.open(encoding="utf-8", newline="") as handle:
        committed = [tuple(row) for row in csv.reader(handle)][1:]
    generated = [
        (str(code), VALUE_PREFIX + symbol, VALUE_PREFIX + letters) for code, symbol, letters in character_rows()
    ]
    assert committed == generated


def test_dbt_reads_the_same_table_python_does():
    seed = Path(__file__).resolve().parent.parent / "dbt" / "seeds" / "name_key_characters.csv"
    assert seed.resolve() == TABLE_PATH.resolve()


# -- every warehouse gives Python's key ------------------------------------------------------------


def random_names(count: int, seed: int = 20261207) -> list[str]:
    """Strings over every assigned code point (no U+0000: no warehouse stores it in text)."""
    rng = random.Random(seed)
    alphabet = [
        chr(c)
        for c in range(1, sys.maxunicode + 1)
        if unicodedata.category(chr(c)) not in ("Cs", "Cn") and not 0xD800 <= c <= 0xDFFF
    ]
    common = list(" -()[].!'feat the live remix ABCabc")
    names = []
    for _ in range(count):
        size = rng.randint(1, 24)
        names.append("".join(rng.choice(common if rng.random() < 0.3 else alphabet) for _ in range(size)))
    return names


def conformance_names() -> list[str]:
    return sorted({entry["name"] for entry in CORPUS} | set(random_names(400)))


def _duckdb(tmp_path: Path, stack: ExitStack, request) -> Settings:
    return Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})


def _postgres(tmp_path: Path, stack: ExitStack, request) -> Settings:
    from music_platform_tests.pg_utils import fresh_database, require_postgres

    url = stack.enter_context(fresh_database("mp_namekey", require_postgres()))
    return Settings.from_env(
        {"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data"), "MUSIC_PLATFORM_TARGET": "postgres",
         "MUSIC_PLATFORM_POSTGRES_URL": url}
    )  # fmt: skip


def _snowflake(tmp_path: Path, stack: ExitStack, request) -> Settings:
    import snowflake.connector

    server = request.getfixturevalue("fakesnow_server")
    database = f"MP_NAMEKEY_{uuid.uuid4().hex[:8].upper()}"
    env = {**server.env(), "SNOWFLAKE_DATABASE": database}
    with snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"], user=env["SNOWFLAKE_USER"], password=env["SNOWFLAKE_PASSWORD"],
        host=server.host, port=server.port, protocol="http",
    ) as conn:  # fmt: skip
        conn.cursor().execute(f"create database {database}")
        conn.cursor().execute(f"create schema if not exists {database}.public")
    settings = Settings.from_env({**env, "MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})
    SNOWFLAKE_ENV[id(settings)] = env
    stack.callback(SNOWFLAKE_ENV.pop, id(settings), None)
    return settings


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_settings",
    [_duckdb, pytest.param(_postgres, marks=pytest.mark.postgres), _snowflake],
    ids=["duckdb", "postgres", "snowflake"],
)
def test_the_dbt_macro_gives_pythons_key_on_every_warehouse(tmp_path, make_settings, request):
    names = conformance_names()
    with ExitStack() as stack:
        settings = make_settings(tmp_path, stack, request)
        warehouse = connect_warehouse(settings)
        warehouse.replace_table("conformance", "names", pd.DataFrame({"name": names}))
        run_dbt(["seed", "--select", "name_key_characters"], settings, tmp_path)
        sql = compile_inline(
            f"with corpus as (select name from {warehouse.qualified('conformance', 'names')}),\n"
            "{{ name_key_ctes('corpus', 'corpus') }}\nselect name, name_key from corpus_keys",
            settings,
            tmp_path,
        )
        got = warehouse.query_df(sql)
    got.columns = [c.lower() for c in got.columns]
    keys = dict(zip(got["name"], got["name_key"], strict=True))
    assert set(keys) == set(names), "every name gets exactly one key"
    mismatches = {name: (keys[name], name_key(name)) for name in names if keys[name] != name_key(name)}
    assert not mismatches, (
        f"{len(mismatches)} of {len(names)} keys differ from Python's: {list(mismatches.items())[:5]}"
    )
