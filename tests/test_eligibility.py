"""Readable entry rules: a shallow tree finds the threshold that defines a group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_py.eligibility import RULE_FEATURES, eligibility_rules


def base(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.uniform(0, 100, n) for f in RULE_FEATURES})
    frame["monetary"] = rng.uniform(0, 5000, n)
    return frame


def selects(customers: pd.DataFrame, conditions: list[dict]) -> np.ndarray:
    """The customers a rule's conditions select, applied as the JSON states them."""
    selected = np.ones(len(customers), dtype=bool)
    for condition in conditions:
        values = customers[condition["feature"]].to_numpy()
        threshold = condition["threshold"]
        assert condition["operator"] in ("<=", ">")
        selected &= values <= threshold if condition["operator"] == "<=" else values > threshold
    return selected


def test_the_rule_recovers_a_known_threshold():
    customers = base()
    insider = (customers["monetary"] > 3000).to_numpy()
    rules = eligibility_rules(customers, insider)
    best = rules.iloc[0]
    assert best["precision"] == 1.0 and best["recall"] == 1.0
    [condition] = best["conditions"]
    assert condition["feature"] == "monetary" and condition["operator"] == ">"
    assert abs(condition["threshold"] - 3000) < 10
    assert best["rule"] == f"monetary > {condition['threshold']:,.2f}"
    assert selects(customers, best["conditions"]).tolist() == insider.tolist()


def test_two_conditions_give_a_conjunction_with_honest_scores():
    customers = base(seed=1)
    insider = ((customers["monetary"] > 2500) & (customers["frequency"] > 60)).to_numpy()
    rules = eligibility_rules(customers, insider)
    features = {c["feature"] for c in rules.iloc[0]["conditions"]}
    assert {"monetary", "frequency"} <= features
    # Every rule's counts and scores, recomputed by applying its conditions as written.
    for rule in rules.itertuples():
        selected = selects(customers, rule.conditions)
        assert rule.customers == selected.sum() > 0
        assert rule.insiders == (selected & insider).sum()
        assert rule.precision == pytest.approx(rule.insiders / rule.customers)
        assert rule.recall == pytest.approx(rule.insiders / insider.sum())
    # Leaves do not overlap: together the rules select each customer at most once.
    overlap = sum(selects(customers, r) for r in rules["conditions"])
    assert overlap.max() == 1
    assert list(rules["rule_id"]) == list(range(1, len(rules) + 1))
    assert list(rules["recall"]) == sorted(rules["recall"], reverse=True)


def test_rules_need_both_classes_and_readable_depth():
    customers = base(n=100)
    with pytest.raises(ValueError, match="both Insiders and other customers"):
        eligibility_rules(customers, np.zeros(100, dtype=bool))
    with pytest.raises(ValueError, match="max_depth"):
        eligibility_rules(customers, np.arange(100) % 2 == 0, max_depth=5)
    with pytest.raises(ValueError, match="lack the rule features: monetary"):
        eligibility_rules(customers.drop(columns="monetary"), np.arange(100) % 2 == 0)
