"""Entry rules a person can read: what makes a customer an Insider.

The clustering decides membership in a space no marketer can reason about. A shallow
decision tree (depth at most 3) fitted on the plain customer features against
``is_insider`` turns that decision into at most eight threshold rules such as
"frequency > 11 and monetary > 1,830". Each leaf that predicts "Insider" becomes one
rule, reported with its precision (share of the customers it selects who are
Insiders) and recall (share of all Insiders it selects), so marketing sees how
faithful the readable version is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from models_py.clustering.config import DEFAULT_FEATURES

# The clustering's own features: the rules explain its decision in its own terms.
RULE_FEATURES: tuple[str, ...] = DEFAULT_FEATURES

RULE_COLUMNS: tuple[str, ...] = (
    "rule_id",
    "rule",
    "conditions",
    "customers",
    "insiders",
    "precision",
    "recall",
)


def eligibility_rules(
    customers: pd.DataFrame,
    is_insider: Sequence[bool] | np.ndarray | pd.Series,
    features: Sequence[str] = RULE_FEATURES,
    max_depth: int = 3,
    min_share: float = 0.005,
    seed: int = 42,
) -> pd.DataFrame:
    """One row per Insider-predicting leaf of a depth-``max_depth`` tree.

    ``min_share`` is the smallest leaf, as a share of customers: a rule that names
    three people is not a rule. Rules are ordered by recall, best first.
    """
    if not 1 <= max_depth <= 3:
        raise ValueError(f"max_depth must be 1, 2 or 3 (readable rules), got {max_depth}")
    target = np.asarray(is_insider, dtype=bool)
    if len(target) != len(customers):
        raise ValueError(f"{len(target)} labels for {len(customers)} customers")
    missing = [f for f in features if f not in customers.columns]
    if missing:
        raise ValueError(f"customers lack the rule features: {', '.join(missing)}")
    if target.all() or not target.any():
        raise ValueError("need both Insiders and other customers to learn entry rules")
    x = customers[list(features)].astype(float).to_numpy()
    tree = DecisionTreeClassifier(
        max_depth=max_depth,
        min_samples_leaf=max(1, int(np.ceil(min_share * len(x)))),
        class_weight="balanced",
        random_state=seed,
    ).fit(x, target)
    leaves = tree.apply(x)
    structure = tree.tree_
    total_insiders = int(target.sum())
    rows = []
    for leaf, path in _paths(structure, list(features)).items():
        values = structure.value[leaf][0]
        if tree.classes_[int(np.argmax(values))] != np.True_:
            continue
        selected = leaves == leaf
        insiders = int(target[selected].sum())
        rows.append(
            {
                "conditions": path,
                "rule": " and ".join(_text(c) for c in path) or "everyone",
                "customers": int(selected.sum()),
                "insiders": insiders,
                "precision": insiders / max(int(selected.sum()), 1),
                "recall": insiders / total_insiders,
            }
        )
    rules = pd.DataFrame(rows, columns=[c for c in RULE_COLUMNS if c != "rule_id"])
    rules = rules.sort_values(["recall", "precision"], ascending=False, kind="stable")
    rules.insert(0, "rule_id", range(1, len(rules) + 1))
    rules["conditions"] = [
        [{"feature": f, "operator": op, "threshold": t} for f, op, t in path]
        for path in rules["conditions"]
    ]
    return rules.reset_index(drop=True)


def _paths(structure, features: list[str]) -> dict[int, list[tuple[str, str, float]]]:
    """Leaf id -> the (feature, operator, threshold) conditions on the way to it."""
    paths: dict[int, list[tuple[str, str, float]]] = {}
    stack: list[tuple[int, list[tuple[str, str, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = structure.children_left[node], structure.children_right[node]
        if left == right:  # a leaf
            paths[node] = path
            continue
        name = features[structure.feature[node]]
        threshold = float(structure.threshold[node])
        stack.append((left, [*path, (name, "<=", threshold)]))
        stack.append((right, [*path, (name, ">", threshold)]))
    return paths


def _text(condition: tuple[str, str, float]) -> str:
    feature, operator, threshold = condition
    return f"{feature} {operator} {threshold:,.2f}"
