"""Every knob of the customer segmentation, in one frozen, validated record.

The segmentation is re-run on a schedule and its output drives a loyalty
programme, so a run must be explainable after the fact: which features, which
transform, which candidate spaces and algorithms were tried, and which rule picked
the winner. Keeping all of that in one immutable dataclass (recorded with each run
through :meth:`ClusteringConfig.to_dict`) means a run can be reproduced exactly from
its record, and validating in ``__post_init__`` makes a typo fail at construction
instead of deep inside a twenty-second sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SCALERS: tuple[str, ...] = ("robust", "standard", "minmax")
SPACES: tuple[str, ...] = ("scaled", "pca", "umap", "tree")
ALGORITHMS: tuple[str, ...] = ("kmeans", "gmm", "ward", "hdbscan")
SELECTION_METRICS: tuple[str, ...] = ("silhouette", "silhouette_features")

# The behavioural columns of marts.dim_customers that describe *how* a customer
# buys. Gross revenue, returns value and item counts are left out on purpose: they
# are (nearly) sums of the chosen ones and would weight "size" several times over.
DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_ticket",
    "avg_basket_size",
    "distinct_products",
    "return_rate",
    "purchase_rate",
    "tenure_days",
)

# Money and count features are heavy-tailed (a few wholesalers spend 100x the
# median), so they are log-transformed before scaling; otherwise every distance is
# dominated by a handful of giants. return_rate is included because it is mostly
# zero with a tail up to ~50. recency_days and tenure_days are NOT logged: both are
# bounded by the one-year data window and roughly uniform inside it, and the
# difference between 200 and 370 days since the last purchase (lapsed vs. long
# gone) matters as much as between 1 and 30 days.
DEFAULT_LOG_FEATURES: tuple[str, ...] = (
    "frequency",
    "monetary",
    "avg_ticket",
    "avg_basket_size",
    "distinct_products",
    "return_rate",
    "purchase_rate",
)


# The spaces searched by default. UMAP and the tree embedding (which is UMAP too) are
# available ("umap", "tree") but opt-in: numba compiles UMAP for about 40 s in every
# new process, which alone would break the whole graph's 60 s budget, and on this
# data their flattering own-space silhouettes buy no better separation of the real
# features (silhouette in the feature space 0.15 for UMAP + Ward against 0.23 for
# K-Means on PCA). Measured in bench/graph.py.
DEFAULT_SPACES: tuple[str, ...] = ("scaled", "pca")


@dataclass(frozen=True)
class ClusteringConfig:
    """Settings of one segmentation run; see the module docstring for why it is frozen.

    ``squash`` bounds every scaled feature smoothly to ``(-squash, squash)`` with
    ``squash * tanh(x / squash)``: robust scaling divides by the inter-quartile
    range, and for a feature like return_rate (75% of customers at ~0) that range is
    tiny, so a single heavy returner would sit hundreds of units away and dominate
    every distance. tanh keeps the order of customers (unlike hard clipping, which
    piles them onto one value and gives Gaussian mixtures a degenerate component).
    ``None`` disables it.

    ``silhouette_sample_size`` caps the points used for silhouettes: the silhouette
    is quadratic in the number of points, and the same fixed-seed sample is used for
    every candidate so that their scores are comparable.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    log_features: tuple[str, ...] = DEFAULT_LOG_FEATURES
    scaler: str = "robust"
    squash: float | None = 5.0
    spaces: tuple[str, ...] = DEFAULT_SPACES
    algorithms: tuple[str, ...] = ALGORITHMS
    k_min: int = 4
    k_max: int = 12
    business_k_min: int = 4
    business_k_max: int = 12
    min_cluster_share: float = 0.01
    selection_metric: str = "silhouette"
    sample_size: int = 20_000
    silhouette_sample_size: int = 3_000
    bootstrap_runs: int = 10
    seed: int = 42
    label_batch_size: int = 100_000
    # Threads for the sweep and the bootstrap (-1 = all cores). Results do not
    # depend on it: every fit is seeded and independent of the others.
    n_jobs: int = -1
    min_customers: int = 10
    pca_variance: float = 0.90
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.0
    umap_n_components: int = 2
    # 200 epochs instead of UMAP's 500 for small data: the layout is used for
    # clustering, not for publication-quality pictures, and it halves the time.
    umap_n_epochs: int = 200
    tree_n_estimators: int = 100
    tree_max_depth: int = 8
    tree_target: str = "monetary"
    kmeans_n_init: int = 3
    # In scaled units (IQR = 1). Far above sklearn's 1e-6 because several features
    # have large point masses (return_rate = 0, frequency = 1) on which a Gaussian
    # component would otherwise collapse to a spike of unbounded likelihood.
    gmm_reg_covar: float = 1e-3

    def __post_init__(self) -> None:
        # Lists are accepted for convenience but stored as tuples so the record
        # stays hashable and immutable.
        for name in ("features", "log_features", "spaces", "algorithms"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ValueError(f"{name} must be a tuple of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        if not self.features:
            raise ValueError("features must name at least one column")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features contains duplicates: {list(self.features)}")
        unknown_log = [f for f in self.log_features if f not in self.features]
        if unknown_log:
            raise ValueError(f"log_features not in features: {unknown_log}")
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {list(SCALERS)}, got {self.scaler!r}")
        if self.squash is not None and not self.squash > 0:
            raise ValueError(f"squash must be a positive number or None, got {self.squash!r}")
        _check_choices("spaces", self.spaces, SPACES)
        _check_choices("algorithms", self.algorithms, ALGORITHMS)
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(
                f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}"
            )
        if not 2 <= self.business_k_min <= self.business_k_max:
            raise ValueError(
                "need 2 <= business_k_min <= business_k_max, got "
                f"{self.business_k_min}..{self.business_k_max}"
            )
        if self.business_k_max < self.k_min or self.business_k_min > self.k_max:
            raise ValueError(
                f"business range {self.business_k_min}..{self.business_k_max} does not overlap "
                f"the swept range k_min..k_max = {self.k_min}..{self.k_max}"
            )
        if not 0 <= self.min_cluster_share < 0.5:
            raise ValueError(f"min_cluster_share must be in [0, 0.5), got {self.min_cluster_share}")
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"selection_metric must be one of {list(SELECTION_METRICS)}, "
                f"got {self.selection_metric!r}"
            )
        positive_ints = {
            "sample_size": self.sample_size,
            "silhouette_sample_size": self.silhouette_sample_size,
            "label_batch_size": self.label_batch_size,
            "umap_n_components": self.umap_n_components,
            "umap_n_epochs": self.umap_n_epochs,
            "tree_n_estimators": self.tree_n_estimators,
            "tree_max_depth": self.tree_max_depth,
            "kmeans_n_init": self.kmeans_n_init,
        }
        for name, value in positive_ints.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_jobs, int) or self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(
                f"n_jobs must be -1 (all cores) or a positive integer, got {self.n_jobs!r}"
            )
        if self.min_customers < 10:
            raise ValueError(f"min_customers must be at least 10, got {self.min_customers}")
        if self.sample_size < self.min_customers:
            raise ValueError(
                f"sample_size ({self.sample_size}) must be >= min_customers ({self.min_customers})"
            )
        if not isinstance(self.bootstrap_runs, int) or self.bootstrap_runs < 0:
            raise ValueError(f"bootstrap_runs must be an integer >= 0, got {self.bootstrap_runs!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not 0 < self.pca_variance <= 1:
            raise ValueError(f"pca_variance must be in (0, 1], got {self.pca_variance}")
        if self.umap_n_neighbors < 2:
            raise ValueError(f"umap_n_neighbors must be >= 2, got {self.umap_n_neighbors}")
        if self.umap_min_dist < 0:
            raise ValueError(f"umap_min_dist must be >= 0, got {self.umap_min_dist}")
        if "tree" in self.spaces:
            if self.tree_target not in self.features:
                raise ValueError(f"tree_target {self.tree_target!r} must be one of the features")
            if len(self.features) < 2:
                raise ValueError("the 'tree' space needs at least two features")
        if self.gmm_reg_covar <= 0:
            raise ValueError(f"gmm_reg_covar must be > 0, got {self.gmm_reg_covar}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, to be stored with the run that used them."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }


def _check_choices(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise ValueError(f"{name} must not be empty (choose from {list(allowed)})")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {name} {unknown}; choose from {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} contains duplicates: {list(values)}")
