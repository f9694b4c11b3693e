"""The ledger rule: what a layer received = what it kept + what it set aside with a reason."""

from __future__ import annotations

import pytest

from music_platform.quality.completeness import DEFAULT_THRESHOLD
from music_platform.quality.ledger import Ledger, LedgerVerdict


def test_a_layer_that_keeps_or_sets_aside_every_row_passes():
    ledger = Ledger("2025-03-01", received=1000, kept=990, set_aside={"duplicate": 4, "missing_artist_name": 6})
    assert ledger.lost == 0
    assert ledger.accounted_share == 1.0
    assert ledger.passes()
    assert "received 1,000 = kept 990 + duplicate 4 + missing_artist_name 6" in ledger.describe()


def test_a_row_missing_without_a_reason_fails_even_when_95_percent_are_kept():
    ledger = Ledger("2025-03-01", received=1000, kept=999, set_aside={})
    assert ledger.lost == 1
    assert ledger.kept_share >= DEFAULT_THRESHOLD
    assert not ledger.passes()
    assert "1 UNACCOUNTED" in ledger.describe()


def test_keeping_less_than_the_threshold_fails_even_when_every_row_has_a_reason():
    ledger = Ledger("2025-03-01", received=100, kept=94, set_aside={"missing_user": 6})
    assert ledger.lost == 0 and ledger.accounted_share == 1.0
    assert not ledger.passes()
    assert Ledger("d", received=100, kept=95, set_aside={"missing_user": 5}).passes()


def test_rows_appearing_from_nowhere_fail_too():
    ledger = Ledger("2025-03-01", received=10, kept=11)
    assert ledger.lost == -1 and not ledger.passes()
    assert "1 more kept than received" in ledger.describe()


@pytest.mark.parametrize(("kept", "set_aside", "passes"), [(0, {}, True), (1, {}, False), (0, {"duplicate": 1}, False)])
def test_an_empty_partition_passes_only_when_nothing_came_out_of_it(kept, set_aside, passes):
    assert Ledger("2025-03-01", received=0, kept=kept, set_aside=set_aside).passes() is passes


def test_a_verdict_names_the_failing_partitions_and_adds_up_the_reasons():
    verdict = LedgerVerdict(
        [
            Ledger("2025-03-01", 100, 100),
            Ledger("2025-03-02", 100, 97, {"duplicate": 3}),
            Ledger("2025-03-03", 100, 90, {"missing_track_name": 2}),
        ]
    )
    assert not verdict.passed
    assert [ledger.label for ledger in verdict.failing] == ["2025-03-03"]
    total = verdict.total()
    assert (total.received, total.kept, total.lost) == (300, 287, 8)
    assert total.set_aside == {"duplicate": 3, "missing_track_name": 2}
    assert "failing: 2025-03-03" in verdict.describe()


def test_items_that_were_never_data_are_accounted_for_but_not_counted_against_the_share():
    # page 1 of each user's walk holds the now-playing item: set aside, not a scrobble to keep
    ledger = Ledger("API items", received=100, kept=90, set_aside={"now_playing": 8, "duplicate": 2})
    assert ledger.lost == 0
    assert not ledger.passes()
    assert ledger.passes(not_data=("now_playing", "duplicate"))
    quarantined = Ledger("API items", received=100, kept=90, set_aside={"now_playing": 2, "quarantined": 8})
    assert not quarantined.passes(not_data=("now_playing", "duplicate"))


def test_an_older_chart_superseded_by_the_latest_is_accounted_for_without_failing_the_share():
    from music_platform.quality.ledger import SUPERSEDED

    chart = Ledger("lastfm.lastfm_chart_top_tracks", received=150, kept=50, set_aside={SUPERSEDED: 100})
    assert chart.lost == 0
    assert not LedgerVerdict([chart]).passed  # counted as data, a third kept would fail
    assert LedgerVerdict([chart], not_data=(SUPERSEDED,)).passed
    lost_one = Ledger("lastfm.lastfm_chart_top_tracks", received=150, kept=49, set_aside={SUPERSEDED: 100})
    assert not LedgerVerdict([lost_one], not_data=(SUPERSEDED,)).passed
