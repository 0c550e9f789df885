"""The candidate definitions of the Insiders and their evaluation at one origin, on
hand-made score tables whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_py.insiders_definitions import (
    BASELINE,
    CLUSTER,
    DEFINITIONS,
    EVALUATION_COLUMNS,
    EXPECTED,
    RANDOM,
    evaluate_definitions,
    select_members,
    top_n,
)

# The definitions that rank on a column of the scores table (no fitted model needed).
RULES = (BASELINE, "rfm_champions", "recency_weighted_revenue", "past_plus_recent_revenue")


def score_table() -> pd.DataFrame:
    """Six customers known at one date, with every score a definition ranks on.

    By past net revenue: c1 600, c2 500, c3 400, c4 300, c5 200, c6 100.
    rfm_points: c6 and c5 are Champions (100 + R + F + M), then c4 (12), c1 (9).
    recency_weighted_revenue: c3 first (recent), then c1.
    past + recent: c6 100 + 900 = 1000, c1 600 + 0, c2 500 + 50, ...
    horizon_net_revenue (what they spent after the date): c6 1000, c5 400, c3 300,
    c1 200, c2 100, c4 0: 2000 in all.
    """
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "past_net_revenue": [600.0, 500.0, 400.0, 300.0, 200.0, 100.0],
            "recent_net_revenue": [0.0, 50.0, 300.0, 0.0, 100.0, 900.0],
            "recency_weighted_revenue": [300.0, 100.0, 390.0, 50.0, 150.0, 95.0],
            "rfm_points": [9, 5, 8, 12, 110, 111],
            "horizon_net_revenue": [200.0, 100.0, 300.0, 0.0, 400.0, 1000.0],
        }
    )


# --- top_n ---------------------------------------------------------------------------------


def test_top_n_sorts_by_score_descending() -> None:
    scores = score_table()
    assert top_n(scores, "past_net_revenue", 3) == ["c1", "c2", "c3"]
    assert top_n(scores, "rfm_points", 3) == ["c6", "c5", "c4"]
    assert top_n(scores, "recency_weighted_revenue", 2) == ["c3", "c1"]


def test_top_n_breaks_ties_by_past_revenue_then_customer_id() -> None:
    scores = pd.DataFrame(
        {
            "customer_id": ["b", "a", "d", "c", "e"],
            "score": [5.0, 5.0, 5.0, 5.0, 9.0],
            "past_net_revenue": [10.0, 10.0, 30.0, 10.0, 0.0],
        }
    )
    # e has the best score; among the four tied at 5, d has the most past revenue,
    # then a, b, c (tied again) by id.
    assert top_n(scores, "score", 5) == ["e", "d", "a", "b", "c"]
    assert top_n(scores, "score", 3) == ["e", "d", "a"]


@pytest.mark.parametrize("seed", range(5))
def test_top_n_does_not_depend_on_row_order(seed: int) -> None:
    scores = pd.DataFrame(
        {
            "customer_id": [f"k{i:02d}" for i in range(20)],
            "score": [float(i % 4) for i in range(20)],  # many ties
            "past_net_revenue": [float(i % 3) for i in range(20)],
        }
    )
    expected = top_n(scores, "score", 7)
    shuffled = scores.sample(frac=1.0, random_state=seed)
    assert top_n(shuffled, "score", 7) == expected
    assert top_n(shuffled.reset_index(drop=True), "score", 7) == expected


def test_top_n_ranks_a_missing_score_last_and_handles_small_n() -> None:
    scores = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "score": [np.nan, 1.0, 2.0],
            "past_net_revenue": [1000.0, 0.0, 0.0],
        }
    )
    assert top_n(scores, "score", 3) == ["c", "b", "a"]
    assert top_n(scores, "score", 0) == []
    assert top_n(scores, "score", -1) == []
    assert top_n(scores, "score", 10) == ["c", "b", "a"]


def test_top_n_returns_string_ids() -> None:
    scores = pd.DataFrame(
        {"customer_id": [12346, 12347], "score": [1.0, 2.0], "past_net_revenue": [0.0, 0.0]}
    )
    assert top_n(scores, "score", 2) == ["12347", "12346"]


# --- select_members ------------------------------------------------------------------------


def test_every_definition_has_the_size_of_the_cluster() -> None:
    scores = score_table()
    expected = pd.Series({"c4": 50.0, "c2": 40.0, "c6": 10.0})  # c1, c3, c5: not fitted -> 0
    members = select_members(scores, ["c3", "c1"], expected)
    assert set(members) == {CLUSTER, *RULES, EXPECTED}
    assert set(members) <= set(DEFINITIONS)
    assert {len(ids) for ids in members.values()} == {2}
    assert members[CLUSTER] == ["c1", "c3"]
    assert members[BASELINE] == ["c1", "c2"]
    assert members["rfm_champions"] == ["c6", "c5"]
    assert members[EXPECTED] == ["c4", "c2"]
    assert members["recency_weighted_revenue"] == ["c3", "c1"]
    # past + recent: c6 1000, c3 700, c1 600, c2 550, c5 300, c4 300
    assert members["past_plus_recent_revenue"] == ["c6", "c3"]


def test_expected_revenue_is_skipped_without_a_fit() -> None:
    members = select_members(score_table(), ["c5", "c6", "c4"])
    assert EXPECTED not in members
    assert set(members) == {CLUSTER, *RULES}
    assert all(len(ids) == 3 for ids in members.values())


def test_cluster_ids_are_compared_as_strings() -> None:
    scores = score_table().assign(customer_id=[1, 2, 3, 4, 5, 6])
    members = select_members(scores, [2, "1"])
    assert members[CLUSTER] == ["1", "2"]
    assert members[BASELINE] == ["1", "2"]


def test_an_empty_cluster_gives_empty_definitions() -> None:
    members = select_members(score_table(), [], pd.Series({"c1": 1.0}))
    assert all(ids == [] for ids in members.values())


def test_a_cluster_member_the_scores_do_not_know_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 cluster members are not among the customers known"):
        select_members(score_table(), ["c1", "stranger"])


def test_select_members_leaves_the_scores_alone() -> None:
    scores = score_table()
    before = scores.copy()
    select_members(scores, ["c1"], pd.Series({"c1": 5.0}))
    pd.testing.assert_frame_equal(scores, before)


# --- evaluate_definitions -----------------------------------------------------------------


def test_shares_of_the_horizon_revenue_by_hand() -> None:
    scores = score_table()
    members = {
        CLUSTER: ["c1", "c3"],  # 200 + 300 = 500 of 2000
        BASELINE: ["c1", "c2"],  # 200 + 100 = 300
        "rfm_champions": ["c6", "c5"],  # 1000 + 400 = 1400
        "nobody_known": ["c4", "ghost"],  # 0 + (not known: 0) = 0
    }
    table = evaluate_definitions(scores, members, n_random=200, seed=1)
    assert list(table.columns) == list(EVALUATION_COLUMNS)
    assert table["definition"].tolist() == [*members, RANDOM]
    by = table.set_index("definition")
    assert by.loc[CLUSTER, "horizon_revenue"] == pytest.approx(500.0)
    assert by.loc[CLUSTER, "share_of_horizon_revenue"] == pytest.approx(0.25)
    assert by.loc[BASELINE, "share_of_horizon_revenue"] == pytest.approx(0.15)
    assert by.loc["rfm_champions", "share_of_horizon_revenue"] == pytest.approx(0.7)
    assert by.loc["nobody_known", "horizon_revenue"] == pytest.approx(0.0)
    assert (table["customers_known"] == 6).all()
    assert (table["total_horizon_revenue"] == 2000.0).all()
    assert table["members"].tolist() == [2, 2, 2, 2, 2]
    assert by.drop(index=RANDOM)[["share_low", "share_high"]].isna().all().all()


def test_random_groups_mean_and_interval_are_sane() -> None:
    scores = score_table()
    members = {CLUSTER: ["c1", "c3"], BASELINE: ["c1", "c2"]}
    random = evaluate_definitions(scores, members, n_random=4000, confidence=0.9, seed=3)
    row = random.set_index("definition").loc[RANDOM]
    # A random pair of six customers takes 2/6 of the revenue on average.
    assert row["members"] == 2
    assert row["share_of_horizon_revenue"] == pytest.approx(1 / 3, abs=0.02)
    # The 15 possible pairs take between 100 (c4 + c2) and 1400 (c6 + c5) of 2000.
    assert 100 / 2000 <= row["share_low"] < 1 / 3 < row["share_high"] <= 1400 / 2000
    wider = evaluate_definitions(scores, members, n_random=4000, confidence=0.98, seed=3)
    wide = wider.set_index("definition").loc[RANDOM]
    assert wide["share_low"] <= row["share_low"]
    assert wide["share_high"] >= row["share_high"]


def test_random_groups_are_seeded() -> None:
    scores = score_table()
    members = {CLUSTER: ["c1", "c3", "c5"]}
    first = evaluate_definitions(scores, members, n_random=50, seed=11)
    again = evaluate_definitions(scores, members, n_random=50, seed=11)
    other = evaluate_definitions(scores, members, n_random=50, seed=12)
    pd.testing.assert_frame_equal(first, again)
    assert (
        first.iloc[-1]["horizon_revenue"] != other.iloc[-1]["horizon_revenue"]
        or first.iloc[-1]["share_low"] != other.iloc[-1]["share_low"]
    )


def test_random_groups_have_the_largest_definition_size() -> None:
    table = evaluate_definitions(score_table(), {CLUSTER: ["c1"], BASELINE: ["c1", "c2", "c3"]})
    assert table.set_index("definition").loc[RANDOM, "members"] == 3


def test_a_horizon_not_over_is_refused() -> None:
    scores = score_table()
    scores.loc[2, "horizon_net_revenue"] = np.nan
    with pytest.raises(ValueError, match="the horizon after this origin is not over"):
        evaluate_definitions(scores, {CLUSTER: ["c1"]})


def test_a_horizon_without_revenue_has_no_shares() -> None:
    scores = score_table().assign(horizon_net_revenue=0.0)
    table = evaluate_definitions(scores, {CLUSTER: ["c1"]}, n_random=20)
    assert table["share_of_horizon_revenue"].isna().all()
    assert table["share_low"].isna().all()
    assert table["share_high"].isna().all()
