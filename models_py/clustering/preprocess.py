"""Input checks and the feature transform shared by fitting and scoring.

Clustering is distance-based, so the features must first be put on comparable,
roughly symmetric scales: heavy-tailed money/count features get a sign-preserving
``log1p`` (monetary is net of returns and CAN be negative, so a plain log would
fail), then a scaler. The fitted transform is kept in a pickleable
:class:`Preprocessor` because new customers must be mapped with the *same*
medians and spreads as the customers the clusters were found on.

The checks raise one-line ``ValueError`` messages that name the offending column
or count: the segmentation runs unattended inside the warehouse pipeline, and a
message like "monetary has 3 NaN" is actionable where a stack trace from inside
scikit-learn is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from models_py.clustering.config import ClusteringConfig

ID_COLUMN = "customer_id"


def validate_customers(
    customers: pd.DataFrame, features: tuple[str, ...], min_customers: int = 1
) -> None:
    """Raise a clear ``ValueError`` if ``customers`` cannot be clustered or labelled.

    ``min_customers`` is 1 for scoring (any number of new customers can be placed
    in existing clusters) and ``config.min_customers`` for fitting.
    """
    if not isinstance(customers, pd.DataFrame):
        raise ValueError(f"customers must be a pandas DataFrame, got {type(customers).__name__}")
    if customers.empty:
        raise ValueError("customers is empty: there is nothing to cluster")
    missing = [c for c in (ID_COLUMN, *features) if c not in customers.columns]
    if missing:
        raise ValueError(f"customers is missing columns: {missing}")
    if len(customers) < min_customers:
        raise ValueError(
            f"too few customers to cluster: {len(customers)} given, at least {min_customers} needed"
        )
    for column in features:
        values = pd.to_numeric(customers[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"feature {column!r} has {int(bad.sum())} missing, non-numeric or infinite "
                f"value(s) out of {len(values)}"
            )
    ids = customers[ID_COLUMN]
    if ids.isna().any():
        raise ValueError(f"{ID_COLUMN} has {int(ids.isna().sum())} missing value(s)")
    duplicated = ids[ids.duplicated()]
    if not duplicated.empty:
        examples = list(duplicated.astype(str).unique()[:3])
        raise ValueError(
            f"{ID_COLUMN} has {len(duplicated)} duplicate(s), e.g. {examples}: one row per "
            "customer is required"
        )


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: a log that keeps negative net revenue negative."""
    return np.sign(values) * np.log1p(np.abs(values))


def _make_scaler(name: str) -> RobustScaler | StandardScaler | MinMaxScaler:
    if name == "robust":
        return RobustScaler()
    if name == "standard":
        return StandardScaler()
    return MinMaxScaler()


class Preprocessor:
    """Signed log on the skewed features, then the configured scaler, then ``squash``.

    Fitted once on the selection sample and reused unchanged for every later
    customer, so that "scaled monetary = 1.0" means the same thing in every batch.
    """

    def __init__(
        self,
        features: tuple[str, ...],
        log_features: tuple[str, ...],
        scaler: str = "robust",
        squash: float | None = 5.0,
    ) -> None:
        self.features = tuple(features)
        self.log_features = tuple(log_features)
        self.scaler_name = scaler
        self.squash = squash
        self._log_mask = np.array([f in self.log_features for f in self.features])
        self._scaler: RobustScaler | StandardScaler | MinMaxScaler | None = None

    @classmethod
    def from_config(cls, config: ClusteringConfig) -> Preprocessor:
        return cls(config.features, config.log_features, config.scaler, config.squash)

    def _raw_matrix(self, customers: pd.DataFrame) -> np.ndarray:
        matrix = customers.loc[:, list(self.features)].to_numpy(dtype=np.float64, copy=True)
        matrix[:, self._log_mask] = signed_log1p(matrix[:, self._log_mask])
        return matrix

    def fit(self, customers: pd.DataFrame) -> Preprocessor:
        validate_customers(customers, self.features)
        self._scaler = _make_scaler(self.scaler_name).fit(self._raw_matrix(customers))
        return self

    def transform(self, customers: pd.DataFrame) -> np.ndarray:
        """Scaled features as a C-contiguous float64 matrix (rows in input order)."""
        if self._scaler is None:
            raise ValueError("Preprocessor is not fitted: call fit() first")
        validate_customers(customers, self.features)
        scaled = self._scaler.transform(self._raw_matrix(customers))
        if self.squash is not None:
            scaled = self.squash * np.tanh(scaled / self.squash)
        return np.ascontiguousarray(scaled, dtype=np.float64)

    def fit_transform(self, customers: pd.DataFrame) -> np.ndarray:
        return self.fit(customers).transform(customers)
