"""The time backtest's share comparison on customers whose hold-out revenue is known.

No mocks: every test builds past customers (with their monetary before the cut-off) and
the revenue after it by hand, so each share follows from the construction. In the main
case the chosen group spends far more after the cut-off than anyone else, while the top
customers by past monetary barely come back (past monetary and future revenue disagree),
some known customers buy nothing after the cut-off, and new customers (not among the past
ones) bring revenue that belongs in the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from models_py.backtest import BACKTEST_COLUMNS, holdout_share_comparison

GROUP_SIZE = 10
CHOSEN_AFTER = 1000.0  # hold-out revenue of each chosen customer
TOP_AFTER = 1.0  # of each of the top customers by past monetary
OTHER_AFTER = 20.0  # of each other known customer who came back
NEW_AFTER = 100.0  # of each new customer


@dataclass(frozen=True)
class Case:
    past: pd.DataFrame
    holdout: pd.Series
    chosen: list[str]
    top: list[str]  # the GROUP_SIZE customers with the highest past monetary
    after: dict[str, float]  # hold-out revenue of every known customer (0 if none)
    new_revenue: float


def build_case(seed: int = 11, new_customers: int = 5) -> Case:
    """100 known customers: 10 chosen, 10 top by past monetary, 60 others who came back
    and 20 who did not; plus ``new_customers`` who first bought after the cut-off."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i:03d}" for i in range(100)]
    chosen, top, back, gone = ids[10:20], ids[:10], ids[20:80], ids[80:]
    monetary = {c: 5000.0 + 100 * i for i, c in enumerate(top)}  # far above everyone else
    monetary |= {c: float(rng.uniform(50, 150)) for c in chosen}  # modest in the past
    monetary |= {c: float(rng.uniform(10, 1000)) for c in back + gone}
    after = {c: 0.0 for c in ids}
    after |= {c: CHOSEN_AFTER for c in chosen}
    after |= {c: TOP_AFTER for c in top}
    after |= {c: OTHER_AFTER for c in back}
    new = {f"n{i}": NEW_AFTER for i in range(new_customers)}
    past = pd.DataFrame({"customer_id": ids, "monetary": [monetary[c] for c in ids]})
    past = past.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # order means nothing
    revenue = {c: v for c, v in after.items() if v > 0} | new  # who did not buy is absent
    holdout = pd.Series(revenue, name="holdout_net_revenue").sample(frac=1.0, random_state=seed)
    return Case(past, holdout, chosen, top, after, sum(new.values()))


def rows_by_group(result: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["customer_group"]: row for _, row in result.iterrows()}


@pytest.fixture(scope="module")
def case() -> Case:
    return build_case()


@pytest.fixture(scope="module")
def result(case: Case) -> pd.DataFrame:
    return holdout_share_comparison(case.past, case.holdout, case.chosen, n_random=2000, seed=3)


def test_one_row_per_group_of_the_same_size(result: pd.DataFrame) -> None:
    assert list(result.columns) == list(BACKTEST_COLUMNS)
    assert result["customer_group"].tolist() == ["insiders", "random", "top_monetary"]
    assert (result["customers"] == GROUP_SIZE).all()


def test_chosen_group_takes_its_share_and_the_largest(case: Case, result: pd.DataFrame) -> None:
    total = sum(case.after.values()) + case.new_revenue
    insiders = rows_by_group(result)["insiders"]
    assert insiders["holdout_revenue"] == pytest.approx(GROUP_SIZE * CHOSEN_AFTER)
    assert insiders["share_of_holdout_revenue"] == pytest.approx(GROUP_SIZE * CHOSEN_AFTER / total)
    assert result["share_of_holdout_revenue"].idxmax() == result.index[0]
    assert pd.isna(insiders["share_ci_low"]) and pd.isna(insiders["share_ci_high"])


def test_denominator_includes_new_customers(case: Case, result: pd.DataFrame) -> None:
    assert case.new_revenue > 0
    known_total = sum(case.after.values())
    shares = result.set_index("customer_group")["share_of_holdout_revenue"]
    assert shares["insiders"] == pytest.approx(
        GROUP_SIZE * CHOSEN_AFTER / (known_total + case.new_revenue)
    )
    # without the new customers, the same group's share is larger by exactly that ratio
    without_new = holdout_share_comparison(
        case.past, case.holdout[case.holdout.index.str.startswith("p")], case.chosen, seed=3
    )
    share_without = without_new.set_index("customer_group").loc["insiders"]
    assert share_without["share_of_holdout_revenue"] == pytest.approx(
        GROUP_SIZE * CHOSEN_AFTER / known_total
    )


def test_top_monetary_picks_by_past_monetary(case: Case, result: pd.DataFrame) -> None:
    # the top spenders before the cut-off barely came back: their share is tiny
    total = sum(case.after.values()) + case.new_revenue
    top = rows_by_group(result)["top_monetary"]
    assert top["holdout_revenue"] == pytest.approx(sum(case.after[c] for c in case.top))
    assert top["holdout_revenue"] == pytest.approx(GROUP_SIZE * TOP_AFTER)
    assert top["share_of_holdout_revenue"] == pytest.approx(GROUP_SIZE * TOP_AFTER / total)
    # a random group sums to less than 10 only if it holds nothing but the 20 customers
    # who did not come back and the top ones: (30 choose 10) / (100 choose 10) ~ 2e-6
    assert top["random_groups_at_least_as_good"] > 0.99


def test_random_share_is_a_random_group_on_average(case: Case, result: pd.DataFrame) -> None:
    after = np.array(list(case.after.values()))
    n, total = len(after), after.sum() + case.new_revenue
    random = rows_by_group(result)["random"]
    # expectation and standard error of the sum of a simple random sample without replacement
    expected = GROUP_SIZE / n * after.sum()
    draw_sd = np.sqrt(GROUP_SIZE * after.var(ddof=1) * (n - GROUP_SIZE) / n)
    assert abs(random["holdout_revenue"] - expected) < 4 * draw_sd / np.sqrt(2000)
    assert random["share_of_holdout_revenue"] == pytest.approx(random["holdout_revenue"] / total)
    assert random["share_ci_low"] <= random["share_of_holdout_revenue"] <= random["share_ci_high"]
    assert random["share_ci_low"] < random["share_ci_high"]
    assert pd.isna(random["random_groups_at_least_as_good"])


def test_random_share_is_size_over_known_when_everyone_spends_alike() -> None:
    past = pd.DataFrame({"customer_id": [f"c{i}" for i in range(40)], "monetary": range(40)})
    holdout = pd.Series(25.0, index=past["customer_id"])
    result = holdout_share_comparison(past, holdout, ["c1", "c2", "c3", "c4"], n_random=300)
    random = rows_by_group(result)["random"]
    # every draw of 4 out of 40 equal spenders takes exactly 4/40 of the revenue
    assert random["share_of_holdout_revenue"] == pytest.approx(4 / 40)
    assert random["share_ci_low"] == pytest.approx(4 / 40)
    assert random["share_ci_high"] == pytest.approx(4 / 40)
    # and every random group ties with the chosen one, which counts as at least as good
    assert rows_by_group(result)["insiders"]["random_groups_at_least_as_good"] == 1.0


def test_random_share_averages_size_over_known_without_new_customers() -> None:
    rng = np.random.default_rng(21)
    ids = [f"c{i}" for i in range(200)]
    past = pd.DataFrame({"customer_id": ids, "monetary": rng.gamma(2.0, 100.0, size=200)})
    after = rng.gamma(1.0, 50.0, size=200)
    holdout = pd.Series(after, index=ids)
    n_random, size = 3000, 20
    result = holdout_share_comparison(past, holdout, ids[:size], n_random=n_random, seed=8)
    random = rows_by_group(result)["random"]
    draw_sd = np.sqrt(size * after.var(ddof=1) * (200 - size) / 200) / after.sum()
    assert abs(random["share_of_holdout_revenue"] - size / 200) < 4 * draw_sd / np.sqrt(n_random)
    assert random["share_ci_low"] <= size / 200 <= random["share_ci_high"]


def test_clearly_superior_group_beats_every_random_group(result: pd.DataFrame) -> None:
    assert rows_by_group(result)["insiders"]["random_groups_at_least_as_good"] == 0.0


def test_group_of_non_returners_is_matched_by_every_random_group(case: Case) -> None:
    # customers who bought nothing after the cut-off: any random group does at least as well
    gone = [c for c, v in case.after.items() if v == 0][:GROUP_SIZE]
    result = holdout_share_comparison(case.past, case.holdout, gone, n_random=500)
    insiders = rows_by_group(result)["insiders"]
    assert insiders["holdout_revenue"] == 0.0
    assert insiders["share_of_holdout_revenue"] == 0.0
    assert insiders["random_groups_at_least_as_good"] == 1.0


def test_wider_confidence_gives_a_wider_random_interval(case: Case) -> None:
    narrow = holdout_share_comparison(case.past, case.holdout, case.chosen, confidence=0.5)
    wide = holdout_share_comparison(case.past, case.holdout, case.chosen, confidence=0.99)
    narrow_random, wide_random = rows_by_group(narrow)["random"], rows_by_group(wide)["random"]
    assert wide_random["share_ci_low"] <= narrow_random["share_ci_low"]
    assert wide_random["share_ci_high"] >= narrow_random["share_ci_high"]
    assert wide_random["share_ci_high"] - wide_random["share_ci_low"] > (
        narrow_random["share_ci_high"] - narrow_random["share_ci_low"]
    )


def test_seeded_draws_repeat(case: Case) -> None:
    first = holdout_share_comparison(case.past, case.holdout, case.chosen, n_random=200, seed=5)
    again = holdout_share_comparison(case.past, case.holdout, case.chosen, n_random=200, seed=5)
    pd.testing.assert_frame_equal(first, again)


def test_holdout_rows_of_one_customer_are_summed_and_ids_compared_as_text() -> None:
    past = pd.DataFrame({"customer_id": [101, 102, 103, 104, 105], "monetary": [5, 4, 3, 2, 1]})
    # customer 103 bought twice after the cut-off; ids are integers here, strings in chosen
    holdout = pd.Series([10.0, 30.0, 50.0, 5.0], index=[101, 103, 103, 999])
    result = holdout_share_comparison(past, holdout, ["103", "103"], n_random=100)
    insiders = rows_by_group(result)["insiders"]
    assert insiders["customers"] == 1  # a repeated chosen id is one customer
    assert insiders["holdout_revenue"] == pytest.approx(80.0)
    assert insiders["share_of_holdout_revenue"] == pytest.approx(80.0 / 95.0)
    top = rows_by_group(result)["top_monetary"]
    assert top["holdout_revenue"] == pytest.approx(10.0)  # customer 101, the top monetary


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_chosen_customers_are_rejected(case: Case) -> None:
    with pytest.raises(ValueError, match="2 chosen customers are not among the past customers"):
        holdout_share_comparison(case.past, case.holdout, [*case.chosen, "n0", "zzz"])


@pytest.mark.parametrize("which", ["none", "all"])
def test_chosen_group_must_be_some_but_not_all(case: Case, which: str) -> None:
    chosen = [] if which == "none" else case.past["customer_id"].tolist()
    with pytest.raises(ValueError, match="some, but not all, past customers"):
        holdout_share_comparison(case.past, case.holdout, chosen)


@pytest.mark.parametrize("sign", [0.0, -1.0])
def test_no_revenue_after_the_cut_off_is_rejected(case: Case, sign: float) -> None:
    holdout = pd.Series(sign * 10.0, index=case.holdout.index)
    with pytest.raises(ValueError, match="no revenue after the cut-off"):
        holdout_share_comparison(case.past, holdout, case.chosen)


def test_empty_holdout_is_rejected(case: Case) -> None:
    with pytest.raises(ValueError, match="no revenue after the cut-off"):
        holdout_share_comparison(case.past, pd.Series([], dtype=float), case.chosen)


@pytest.mark.parametrize("column", ["customer_id", "monetary"])
def test_missing_past_columns_are_rejected(case: Case, column: str) -> None:
    with pytest.raises(ValueError, match="need customer_id and monetary columns"):
        holdout_share_comparison(case.past.drop(columns=[column]), case.holdout, case.chosen)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.2])
def test_confidence_outside_zero_one_is_rejected(case: Case, confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        holdout_share_comparison(case.past, case.holdout, case.chosen, confidence=confidence)
