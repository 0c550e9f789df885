"""Customer segmentation on synthetic customers whose true groups are known.

No mocks and no real data: every test builds customers from five behavioural
archetypes (best customers, regulars, newcomers, lapsed one-timers, heavy
returners) with multiplicative noise, so that a correct pipeline must find them
again. Most tests use the cheap scaled/PCA spaces; one covers UMAP and the tree
space on a few hundred points (it pays numba's compile time once).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from models_py.clustering import (
    ClusteringConfig,
    Preprocessor,
    cluster_profile,
    fit_segmentation,
    insider_cluster,
    label_with_model,
    match_cluster_ids,
    name_clusters,
    score_with_model,
    silhouette_from_distances,
)
from models_py.clustering.naming import INSIDER_MEAN_FLOOR, value_order
from models_py.clustering.preprocess import signed_log1p
from models_py.clustering.selection import mark_choice
from models_py.model_store import ModelStoreError, load_model, save_model

# name: frequency, monetary, recency_days, tenure_days, avg_basket_size,
#       distinct_products, return_rate
ARCHETYPES: dict[str, tuple[float, ...]] = {
    "best": (30, 6000.0, 5, 350, 400.0, 250, 0.01),
    "regulars": (8, 1500.0, 30, 300, 150.0, 60, 0.0),
    "newcomers": (2, 300.0, 10, 20, 120.0, 25, 0.0),
    "one_timers": (1, 150.0, 250, 250, 60.0, 10, 0.0),
    "returners": (4, 400.0, 90, 200, 80.0, 20, 0.4),
}

FAST = ClusteringConfig(spaces=("scaled", "pca"), k_max=8, bootstrap_runs=3)


def make_customers(per_group: int = 120, seed: int = 0) -> pd.DataFrame:
    """Customers of the five archetypes, shuffled; ``group`` holds the true archetype."""
    rng = np.random.default_rng(seed)
    frames = []
    for group, values in enumerate(ARCHETYPES.values()):
        freq, mon, rec, ten, basket, distinct, returns = values
        n = per_group

        def noise(sigma: float = 0.15, n: int = n) -> np.ndarray:
            return np.exp(rng.normal(0.0, sigma, n))

        if freq > 1:
            frequency = np.maximum(1, np.round(freq * noise(0.1))).astype(int)
        else:
            frequency = np.ones(n, dtype=int)
        monetary = mon * noise()
        recency = np.clip(np.round(rec * noise(0.2)), 1, 374).astype(int)
        tenure = np.clip(np.maximum(recency, np.round(ten * noise(0.1))), 1, 374).astype(int)
        if returns > 0:
            return_rate = returns * noise()
        else:
            return_rate = np.where(rng.random(n) < 0.8, 0.0, 0.005 * noise())
        frames.append(
            pd.DataFrame(
                {
                    "recency_days": recency,
                    "tenure_days": tenure,
                    "frequency": frequency,
                    "monetary": monetary,
                    "avg_ticket": monetary / frequency,
                    "avg_basket_size": basket * noise(),
                    "distinct_products": np.maximum(1, np.round(distinct * noise())).astype(int),
                    "return_rate": return_rate,
                    "purchase_rate": frequency / (tenure / 30 + 1),
                    "country": "United Kingdom",
                    "group": group,
                }
            )
        )
    customers = pd.concat(frames, ignore_index=True)
    customers = customers.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ids = [f"C{i:07d}" for i in rng.permutation(len(customers))]
    customers.insert(0, "customer_id", ids)
    return customers


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return make_customers()


@pytest.fixture(scope="module")
def fitted(customers: pd.DataFrame):
    return fit_segmentation(customers, FAST)


def test_recovers_the_known_groups(customers, fitted):
    merged = customers.merge(fitted.labels, on="customer_id")
    assert adjusted_rand_score(merged["group"], merged["cluster_id"]) >= 0.9
    assert fitted.chosen["k"] == len(ARCHETYPES)
    assert fitted.stability_ari >= 0.9
    assert list(fitted.labels["customer_id"]) == list(customers["customer_id"])
    assert len(fitted.embedding) == len(customers)
    assert fitted.embedding[["x", "y"]].notna().all().all()
    assert set(fitted.timings) >= {"preprocess", "spaces", "sweep", "stability", "labelling"}


def test_candidates_table_is_complete_and_one_is_chosen(fitted):
    table = fitted.candidates
    # 2 spaces x (kmeans, gmm, ward at K = k_min..k_max, plus one HDBSCAN run)
    ks = FAST.k_max - FAST.k_min + 1
    assert (FAST.k_min, FAST.k_max) == (4, 8)
    assert len(table) == 2 * (3 * ks + 1)
    assert table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["eligible"]
    assert chosen["silhouette"] == table.loc[table["eligible"], "silhouette"].max()
    assert not table.loc[~table["k"].between(4, 12), "eligible"].any()
    assert fitted.chosen["space"] == chosen["space"]
    assert fitted.chosen["silhouette_features"] == pytest.approx(chosen["silhouette_features"])


def test_selection_metric_is_configurable(fitted):
    config = ClusteringConfig(
        spaces=("scaled", "pca"), k_max=8, selection_metric="silhouette_features"
    )
    table = mark_choice(fitted.candidates.drop(columns=["eligible", "chosen"]), config)
    chosen = table[table["chosen"]].iloc[0]
    assert table["chosen"].sum() == 1
    eligible = table[table["eligible"]]
    assert chosen["silhouette_features"] == eligible["silhouette_features"].max()


def test_insiders_are_the_most_valuable_cluster(customers, fitted):
    labels = fitted.labels
    merged = customers.merge(labels, on="customer_id")
    monetary = merged.groupby("cluster_id")["monetary"]
    means, totals = monetary.mean(), monetary.sum()
    qualifying = means >= INSIDER_MEAN_FLOOR * means.max()
    insiders = labels.loc[labels["is_insider"], "cluster_id"].unique()
    assert len(insiders) == 1
    assert insiders[0] == totals[qualifying].idxmax()
    assert (labels.loc[labels["is_insider"], "cluster_name"] == "Insiders").all()
    # First run: ids are numbered in value order, so the Insiders are 0.
    assert insiders[0] == 0
    assert value_order(merged, merged["cluster_id"].to_numpy()) == sorted(means.index)
    names = labels.groupby("cluster_id")["cluster_name"].first()
    assert names.is_unique


def test_profile_adds_up(customers, fitted):
    profile = fitted.profile
    assert profile["customers"].sum() == len(customers)
    assert profile["share_of_customers"].sum() == pytest.approx(1.0)
    assert profile["share_of_revenue"].sum() == pytest.approx(1.0)
    assert profile["revenue"].sum() == pytest.approx(customers["monetary"].sum())
    assert profile["is_insider"].sum() == 1
    qualifying = profile[
        profile["mean_monetary"] >= INSIDER_MEAN_FLOOR * profile["mean_monetary"].max()
    ]
    assert profile.loc[profile["is_insider"], "revenue"].iloc[0] == pytest.approx(
        qualifying["revenue"].max()
    )
    assert profile["cluster_name"].is_unique
    for column in ("median_recency_days", "mean_avg_ticket", "median_return_rate"):
        assert column in profile.columns


def test_names_follow_the_profile(customers):
    labels = customers["group"].to_numpy()
    names = name_clusters(customers, labels)
    assert names[0] == "Insiders"
    assert names[3] == "Lapsed one-timers"
    assert names[4] == "High returns"
    assert names[2] == "Recent newcomers"
    assert len(set(names.values())) == len(names)
    assert insider_cluster(customers, labels) == 0


def hand_made_clusters(
    clusters: dict[int, tuple[int, float, float]], seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers built by hand: cluster id -> (customers, monetary, recency_days), every
    customer of a cluster alike; rows shuffled. Returns the customers and their labels."""
    frames = [
        pd.DataFrame(
            {
                "cluster": cluster_id,
                "monetary": float(monetary),
                "recency_days": float(recency),
                "frequency": max(1.0, monetary / 500.0),
                "avg_ticket": monetary / max(1.0, monetary / 500.0),
                "avg_basket_size": 100.0,
                "tenure_days": 300.0,
                "return_rate": 0.0,
            },
            index=range(size),
        )
        for cluster_id, (size, monetary, recency) in clusters.items()
    ]
    customers = pd.concat(frames, ignore_index=True)
    customers = customers.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return customers, customers["cluster"].to_numpy()


def test_insiders_are_the_biggest_revenue_among_high_mean_clusters():
    # A: 50 customers at 10,000 (500k); B: 125 at 8,000 (1.0M); C: 3,000 at 300 (900k).
    # A has the highest mean, but B brings twice its revenue at a similar mean.
    customers, labels = hand_made_clusters(
        {0: (50, 10_000.0, 20.0), 1: (125, 8_000.0, 30.0), 2: (3_000, 300.0, 100.0)}
    )
    monetary = customers.groupby("cluster")["monetary"]
    assert monetary.mean().idxmax() == 0
    assert list(monetary.sum()) == [500_000.0, 1_000_000.0, 900_000.0]
    assert insider_cluster(customers, labels) == 1
    assert value_order(customers, labels) == [1, 0, 2]
    names = name_clusters(customers, labels)
    assert names[1] == "Insiders"
    assert "Insiders" not in {names[0], names[2]}
    assert len(set(names.values())) == len(names)
    profile = cluster_profile(customers, labels, names)
    assert profile.loc[profile["is_insider"], "cluster_id"].tolist() == [1]


@pytest.mark.parametrize(
    ("big_mean", "insider"),
    [
        (4_900.0, 2),  # below half the top mean: its size does not count
        (5_000.0, 1),  # exactly half qualifies, and then the largest total wins
    ],
)
def test_a_huge_low_mean_cluster_does_not_win_on_size(big_mean, insider):
    # Cluster 1 has by far the largest total revenue (10,000 customers).
    customers, labels = hand_made_clusters(
        {0: (20, 10_000.0, 10.0), 1: (10_000, big_mean, 50.0), 2: (40, 6_000.0, 20.0)}
    )
    assert insider_cluster(customers, labels) == insider
    order = value_order(customers, labels)
    assert order == ([2, 0, 1] if insider == 2 else [1, 2, 0])
    assert name_clusters(customers, labels)[insider] == "Insiders"


def test_a_single_qualifying_cluster_is_the_insiders():
    # Only cluster 0 reaches half the top mean (its own); the others follow by mean,
    # not by total, although cluster 2 brings five times cluster 1's revenue.
    customers, labels = hand_made_clusters(
        {0: (10, 10_000.0, 30.0), 1: (100, 4_000.0, 10.0), 2: (1_000, 2_000.0, 5.0)}
    )
    assert insider_cluster(customers, labels) == 0
    assert value_order(customers, labels) == [0, 1, 2]


@pytest.mark.parametrize(
    ("clusters", "insider"),
    [
        # equal totals (600k): the higher mean wins
        ({3: (100, 6_000.0, 10.0), 5: (60, 10_000.0, 40.0)}, 5),
        # equal totals and means: the lower mean recency wins
        ({3: (100, 8_000.0, 40.0), 5: (100, 8_000.0, 10.0)}, 5),
        # all equal: the lower id wins
        ({5: (100, 8_000.0, 10.0), 3: (100, 8_000.0, 10.0)}, 3),
    ],
)
def test_insider_ties_are_broken_by_mean_then_recency_then_id(clusters, insider):
    customers, labels = hand_made_clusters({**clusters, 7: (500, 100.0, 5.0)})
    assert insider_cluster(customers, labels) == insider
    assert value_order(customers, labels) == [insider, 8 - insider, 7]


def test_insiders_when_every_cluster_loses_money():
    # Half of a negative top mean lies above it; the top-mean cluster still qualifies.
    customers, labels = hand_made_clusters({0: (10, -100.0, 10.0), 1: (10, -10.0, 10.0)})
    assert insider_cluster(customers, labels) == 1
    assert value_order(customers, labels) == [1, 0]


def test_names_are_made_unique():
    # Two identical low-value groups get the same rule, hence a suffix.
    base = make_customers(per_group=40, seed=3)
    one_timers = base[base["group"] == 3]
    twin = one_timers.assign(customer_id=one_timers["customer_id"] + "b", group=5)
    both = pd.concat([base, twin], ignore_index=True)
    names = name_clusters(both, both["group"].to_numpy())
    assert len(set(names.values())) == len(names)
    assert {names[3], names[5]} == {"Lapsed one-timers", "Lapsed one-timers 2"}
    profile = cluster_profile(both, both["group"].to_numpy())
    assert profile["cluster_name"].is_unique


def test_ids_are_stable_across_runs(customers, fitted):
    shuffled = customers.sample(frac=1.0, random_state=11).reset_index(drop=True)
    other_seed = ClusteringConfig(spaces=("scaled", "pca"), k_max=8, bootstrap_runs=3, seed=7)
    second = fit_segmentation(shuffled, other_seed, previous_centroids=fitted.centroids)
    merged = fitted.labels.merge(second.labels, on="customer_id", suffixes=("_1", "_2"))
    assert len(merged) == len(customers)
    assert adjusted_rand_score(merged["cluster_id_1"], merged["cluster_id_2"]) == 1.0
    assert (merged["cluster_id_1"] == merged["cluster_id_2"]).all()
    assert (merged["cluster_name_1"] == merged["cluster_name_2"]).all()
    assert list(second.centroids["cluster_id"]) == list(fitted.centroids["cluster_id"])


def test_match_cluster_ids_pairs_nearest_and_numbers_new_clusters():
    previous = pd.DataFrame({"cluster_id": [0, 1, 2], "a": [0.0, 5.0, 10.0], "b": [0.0] * 3})
    new = pd.DataFrame(
        {"cluster_id": [0, 1, 2, 3], "a": [10.2, 0.1, 4.9, 30.0], "b": [0.0, 0.1, 0.0, 0.0]}
    )
    mapping = match_cluster_ids(new, previous, order=[3, 0, 2, 1])
    assert mapping == {0: 2, 1: 0, 2: 1, 3: 3}
    first_run = match_cluster_ids(new, None, order=[3, 0, 2, 1])
    assert first_run == {3: 0, 0: 1, 2: 2, 1: 3}
    with pytest.raises(ValueError, match="lack feature columns"):
        match_cluster_ids(new, previous.drop(columns="b"))


def test_saved_model_labels_like_the_fit(customers, fitted, tmp_path: Path):
    stored = save_model(fitted.segmenter, tmp_path / "models", "segmenter")
    loaded = load_model(tmp_path / "models", stored.name, stored.sha256, "segmenter")
    relabelled = label_with_model(customers, loaded)
    pd.testing.assert_frame_equal(relabelled, fitted.labels)
    # Row order of the input does not matter, and a subset can be scored alone.
    subset = customers.iloc[::7].iloc[::-1]
    expected = fitted.labels.set_index("customer_id").loc[subset["customer_id"]].reset_index()
    pd.testing.assert_frame_equal(label_with_model(subset, loaded), expected)


def test_scoring_with_a_saved_model_reproduces_the_fit_tables(customers, fitted):
    scored = score_with_model(customers, fitted.segmenter)
    pd.testing.assert_frame_equal(scored.labels, fitted.labels)
    pd.testing.assert_frame_equal(scored.embedding, fitted.embedding)
    pd.testing.assert_frame_equal(scored.profile, fitted.profile)
    pd.testing.assert_frame_equal(scored.centroids, fitted.centroids)
    assert fitted.segmenter.chosen == fitted.chosen
    assert fitted.segmenter.config == FAST


def test_load_refuses_other_objects(tmp_path: Path):
    with pytest.raises(ModelStoreError, match="only a Segmenter is saved"):
        save_model({"a": 1}, tmp_path, "not_a_model")  # type: ignore[arg-type]


def test_same_input_and_seed_give_identical_results(customers, fitted):
    again = fit_segmentation(customers.copy(), FAST)
    pd.testing.assert_frame_equal(again.labels, fitted.labels)
    pd.testing.assert_frame_equal(again.candidates, fitted.candidates)
    pd.testing.assert_frame_equal(again.centroids, fitted.centroids)
    assert again.chosen == fitted.chosen
    assert again.stability_ari == fitted.stability_ari


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.iloc[0:0], "empty"),
        (lambda df: df.assign(monetary=df["monetary"].where(df.index != 5)), "'monetary'"),
        (lambda df: df.assign(frequency=df["frequency"].replace(2, np.inf)), "'frequency'"),
        (lambda df: df.iloc[:1], r"1 given, at least 10 needed"),
        (lambda df: df.drop(columns=["avg_ticket"]), r"missing columns: \['avg_ticket'\]"),
        (lambda df: df.assign(customer_id="same"), "duplicate"),
    ],
    ids=["empty", "nan", "inf", "one-customer", "missing-column", "duplicate-id"],
)
def test_bad_input_gives_clear_errors(customers, mutate, message):
    with pytest.raises(ValueError, match=message):
        fit_segmentation(mutate(customers), FAST)


def test_nan_error_counts_the_bad_values(customers):
    broken = customers.copy()
    broken.loc[[1, 2, 3], "return_rate"] = np.nan
    with pytest.raises(ValueError, match=r"'return_rate' has 3 missing"):
        fit_segmentation(broken, FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scaler": "log"}, "scaler must be one of"),
        ({"spaces": ("tsne",)}, "unknown spaces"),
        ({"algorithms": ("dbscan",)}, "unknown algorithms"),
        ({"k_min": 5, "k_max": 3}, "k_min <= k_max"),
        ({"business_k_min": 30, "business_k_max": 40}, "does not overlap"),
        ({"log_features": ("gross_revenue",)}, "not in features"),
        ({"selection_metric": "inertia"}, "selection_metric"),
        ({"min_cluster_share": 0.7}, "min_cluster_share"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClusteringConfig(**kwargs)


def test_config_records_as_plain_values():
    record = ClusteringConfig().to_dict()
    assert record["features"][2] == "monetary"
    assert record["scaler"] == "robust"
    assert ClusteringConfig(**{**record, "seed": 1}).seed == 1


def test_no_eligible_candidate_is_a_clear_error(customers):
    config = ClusteringConfig(
        spaces=("scaled",), algorithms=("kmeans",), k_max=8, min_cluster_share=0.45
    )
    with pytest.raises(ValueError, match="no eligible clustering"):
        fit_segmentation(customers, config)


def test_preprocessor_keeps_the_sign_and_pickles(customers):
    assert signed_log1p(np.array([-9.0, 0.0, 9.0])) == pytest.approx([-np.log(10), 0.0, np.log(10)])
    with_refunds = customers.copy()
    with_refunds.loc[0, "monetary"] = -500.0
    pre = Preprocessor.from_config(ClusteringConfig()).fit(with_refunds)
    scaled = pre.transform(with_refunds)
    assert np.isfinite(scaled).all()
    assert np.abs(scaled).max() < 5.0  # squash bounds every feature
    monetary = ClusteringConfig().features.index("monetary")
    assert scaled[0, monetary] == scaled[:, monetary].min()
    assert np.array_equal(pickle.loads(pickle.dumps(pre)).transform(with_refunds), scaled)


def test_fast_silhouette_matches_scikit_learn():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 3))
    labels = rng.integers(0, 4, 300)
    labels[0] = 9  # a singleton cluster scores 0, as in scikit-learn
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    assert silhouette_from_distances(distances, labels) == pytest.approx(
        silhouette_score(points, labels), abs=1e-12
    )
    assert np.isnan(silhouette_from_distances(distances, np.zeros(300)))


def test_batched_labelling_of_200k_customers():
    big = make_customers(per_group=40_000, seed=5)
    config = ClusteringConfig(
        spaces=("scaled", "pca"),
        algorithms=("kmeans", "ward"),
        k_max=8,
        sample_size=2_000,
        bootstrap_runs=2,
        label_batch_size=50_000,
    )
    result = fit_segmentation(big, config)
    assert len(result.labels) == 200_000
    assert result.labels["customer_id"].is_unique
    assert result.labels["cluster_id"].notna().all()
    assert result.profile["customers"].sum() == 200_000
    merged = big.merge(result.labels, on="customer_id")
    assert adjusted_rand_score(merged["group"], merged["cluster_id"]) >= 0.9
    assert result.segmenter.batch_size == 50_000
    relabelled = label_with_model(big.iloc[:1000], result.segmenter)
    pd.testing.assert_frame_equal(relabelled, result.labels.iloc[:1000])


def test_umap_and_tree_spaces(tmp_path: Path):
    small = make_customers(per_group=120, seed=2)
    config = ClusteringConfig(spaces=("scaled", "pca", "umap", "tree"), k_max=8, bootstrap_runs=2)
    result = fit_segmentation(small, config)
    assert set(result.candidates["space"]) == {"scaled", "pca", "umap", "tree"}
    assert result.candidates["chosen"].sum() == 1
    merged = small.merge(result.labels, on="customer_id")
    assert adjusted_rand_score(merged["group"], merged["cluster_id"]) >= 0.9
    embedded = result.candidates[result.candidates["space"].isin(["umap", "tree"])]
    assert embedded["silhouette"].notna().any()
    # Models of every space are pickleable and score customers without refitting.
    for space in ("umap", "tree"):
        best = fit_segmentation(small, ClusteringConfig(spaces=(space,), k_max=8, bootstrap_runs=1))
        assert best.chosen["space"] == space
        stored = save_model(best.segmenter, tmp_path, space)
        loaded = load_model(tmp_path, stored.name, stored.sha256, space)
        pd.testing.assert_frame_equal(label_with_model(small, loaded), best.labels)
        assert len(label_with_model(small.iloc[:50], loaded)) == 50
