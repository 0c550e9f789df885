"""The dashboard, driven with Streamlit's AppTest against a snapshot from a real run.

Every figure a test expects is read from the snapshot directly with DuckDB, never
through ``dashboard.snapshot``, so a wrong query in the dashboard fails a test.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from dashboard.snapshot import (
    CUSTOMER_TABLES,
    ORDER_BY,
    REQUIRED_COLUMNS,
    MemberFilter,
    Snapshot,
    SnapshotChangedError,
    fingerprint,
    snapshot_path,
)
from orchestration.bi_snapshot import SCHEMA_VERSION, SNAPSHOT_ENV, SNAPSHOT_TABLES

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "dashboard" / "app.py"
PAGES = {
    "Overview": None,
    "Evidence": "views/evidence.py",
    "Clusters": "views/clusters.py",
    "Insiders": "views/insiders.py",
    "Movement": "views/movement.py",
}
INJECTION = "x' or '1'='1"


# Helpers


def read(snapshot: Path, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    """A query straight against the snapshot file, as any BI tool would run it."""
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def one(snapshot: Path, sql: str, params: list[Any] | None = None) -> Any:
    return read(snapshot, sql, params).iloc[0, 0]


def altered_copy(snapshot: Path, target: Path, *statements: str) -> Path:
    """A copy of the snapshot changed by ``statements`` (the original stays intact)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snapshot, target)
    con = duckdb.connect(str(target))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()
    return target


def run(at: AppTest) -> AppTest:
    """Rerun and fail on any exception the page would show as a stack trace."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has ``column``."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with column {column!r} on the page")


def messages(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.info, at.warning, at.error) for e in kind)


@pytest.fixture
def open_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """The app on one page, reading the given snapshot file."""

    def _open(snapshot: Path, page: str = "Overview") -> AppTest:
        monkeypatch.setenv(SNAPSHOT_ENV, str(snapshot))
        at = run(AppTest.from_file(str(APP), default_timeout=60))
        if PAGES[page]:
            at.switch_page(PAGES[page])
            run(at)
        assert [t.value for t in at.title] == [page]
        return at

    return _open


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str | None, bytes]]]:
    """(file name, bytes) of every file a page hands to a download button."""
    captured: list[tuple[str | None, bytes]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def record(
        self: MemoryMediaFileStorage,
        path_or_data: str | bytes,
        mimetype: str,
        kind: Any,
        filename: str | None = None,
    ) -> str:
        if isinstance(path_or_data, bytes):
            captured.append((filename, path_or_data))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    yield captured


# Overview


def test_overview_metrics_are_the_snapshots_figures(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot)
    kpis = read(demo_snapshot, "select * from insiders.kpis order by as_of desc").iloc[0]
    members = one(demo_snapshot, "select count(*) from insiders.members")
    info = read(demo_snapshot, "select * from main.snapshot_info").iloc[0]
    forecast = read(
        demo_snapshot,
        "select * from insiders.revenue_forecast where customer_group = 'insiders'",
    ).iloc[0]
    errors = read(
        demo_snapshot,
        """
        select
            median(abs(relative_error)) as forecast,
            median(abs(naive_relative_error)) as naive,
            median(abs(model_relative_error)) as model,
            count(*) filter (where interval_covers_actual) as covered,
            count(*) as origins
        from insiders.forecast_evaluation
        """,
    ).iloc[0]
    assert errors["origins"] > 0  # the demo data is long enough for rolling origins

    shown = metrics(at)
    assert shown == {
        "Insiders": f"{kpis['insiders']:,}",
        "Share of customers": f"{kpis['share_of_customers']:.1%}",
        "Share of revenue": f"{kpis['share_of_all_revenue']:.1%}",
        "Expected revenue (next months)": f"£{forecast['expected_revenue']:,.0f}",
        "As of": pd.Timestamp(info["as_of"]).date().isoformat(),
        "Run": info["run_id"],
        "Forecast": f"£{forecast['expected_revenue']:,.0f}",
        "Interval from": f"£{forecast['lower_bound']:,.0f}",
        "Interval to": f"£{forecast['upper_bound']:,.0f}",
        "Naive forecast": f"£{forecast['naive_revenue']:,.0f}",
        "Median error, forecast": f"{errors['forecast']:.1%}",
        "Median error, naive": f"{errors['naive']:.1%}",
        "Median error, BG/NBD sum": f"{errors['model']:.1%}",
        "Interval covered": f"{int(errors['covered'])} of {int(errors['origins'])}",
    }
    assert kpis["insiders"] == members > 0
    assert not at.error and not at.warning


def test_overview_names_the_chosen_definition_and_why(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot)
    chosen = read(demo_snapshot, "select * from insiders.definition_choice where is_chosen").iloc[0]
    assert (
        one(demo_snapshot, "select count(*) from insiders.definition_choice where is_chosen") == 1
    )
    text = " ".join(m.value for m in at.markdown)
    assert f"The Insiders are **`{chosen['definition']}`**: {chosen['description']}." in text
    reason = {
        "best_evidence": "Chosen by the evidence",
        "best_mean_none_qualified": "No candidate took at least what the top customers",
        "no_evaluation_origin": "No origin could be evaluated yet",
    }[chosen["chosen_by"]]
    assert reason in text
    assert "Forced" not in text
    # the members are the chosen definition's
    definitions = read(demo_snapshot, "select distinct definition from insiders.members")
    assert definitions["definition"].tolist() == [chosen["definition"]]

    forecast = read(
        demo_snapshot,
        "select * from insiders.revenue_forecast where customer_group = 'insiders'",
    ).iloc[0]
    captions = " ".join(c.value for c in at.caption)
    assert (
        f"interval £{forecast['lower_bound']:,.0f} to £{forecast['upper_bound']:,.0f}" in captions
    )
    assert f"is £{forecast['naive_revenue']:,.0f}." in captions
    assert "What guarantees that the Insiders are better than the rest?" in text
    assert f"took on average {chosen['mean_share']:.1%} of the next months' revenue" in text
    for gone in ("calibrated", "backtest", "cut-off", "hold-out"):
        assert gone not in (text + captions).lower()


def test_overview_says_when_the_definition_was_forced(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    forced = one(
        demo_snapshot,
        "select definition from insiders.definition_choice where not is_chosen "
        "order by evidence_rank desc limit 1",
    )
    altered = altered_copy(
        demo_snapshot,
        tmp_path / "forced.duckdb",
        f"""
        update insiders.definition_choice set
            is_chosen = definition = '{forced}',
            chosen_by = case when definition = '{forced}' then 'forced' end
        """,
    )
    at = open_app(altered)
    text = " ".join(m.value for m in at.markdown)
    assert f"The Insiders are **`{forced}`**" in text
    assert "**Forced** by the run's configuration" in text
    best = one(altered, "select definition from insiders.definition_choice where evidence_rank = 1")
    assert f"the evidence ranks `{best}` first" in text
    assert not at.error


# Evidence


def test_without_origins_the_pages_say_so(demo_snapshot: Path, tmp_path: Path, open_app) -> None:
    """Data too short for a rolling origin: the default definition, and no evaluation."""
    short = altered_copy(
        demo_snapshot,
        tmp_path / "short.duckdb",
        "delete from insiders.definition_evaluation",
        "delete from insiders.forecast_evaluation",
        """
        update insiders.revenue_forecast set
            evaluation_origins = case when customer_group = 'insiders' then 0 end,
            origins_covered = case when customer_group = 'insiders' then 0 end,
            median_abs_relative_error = null, naive_median_abs_relative_error = null,
            model_median_abs_relative_error = null
        """,
        """
        update insiders.definition_choice set
            origins = 0, origins_evaluated = 0, mean_ratio = null, min_ratio = null,
            max_ratio = null, mean_share = null, qualifies = false,
            is_chosen = definition = 'insiders_cluster',
            chosen_by = case when definition = 'insiders_cluster' then 'no_evaluation_origin' end
        """,
    )
    at = open_app(short)
    text = " ".join(m.value for m in at.markdown)
    assert "The Insiders are **`insiders_cluster`**" in text
    assert "No origin could be evaluated yet" in text
    assert metrics(at)["Interval covered"] == "—"
    assert not at.error
    at = open_app(short, "Evidence")
    assert "No rolling-origin evaluation yet" in messages(at)
    assert "No rolling-origin evaluation of the forecast yet." in messages(at)
    assert frame_with(at, "evidence_rank")["is_chosen"].sum() == 1
    assert not at.error


def test_evidence_page_shows_every_definition(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Evidence")
    table = frame_with(at, "evidence_rank")
    expected = read(
        demo_snapshot, "select * from insiders.definition_choice order by evidence_rank, definition"
    )
    assert len(expected) >= 2
    assert table["definition"].tolist() == expected["definition"].tolist()
    assert table["description"].tolist() == expected["description"].tolist()
    assert table["is_chosen"].tolist() == expected["is_chosen"].tolist()
    assert table["qualifies"].tolist() == expected["qualifies"].tolist()
    for column in ("mean_ratio", "min_ratio", "max_ratio", "mean_share"):
        assert table[column].tolist() == pytest.approx(expected[column].tolist(), nan_ok=True)
    assert (
        table["origins_below_top_past_revenue"].tolist()
        == expected["origins_below_top_past_revenue"].tolist()
    )
    chosen = expected[expected["is_chosen"]]["definition"].iloc[0]
    text = " ".join(m.value for m in at.markdown)
    assert f"The Insiders are **`{chosen}`**" in text
    assert not at.error and not at.warning


def test_evidence_page_shows_every_origin(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Evidence")
    evaluation = read(
        demo_snapshot, "select * from insiders.definition_evaluation order by origin_date"
    )
    chosen = one(demo_snapshot, "select definition from insiders.definition_choice where is_chosen")
    origins = sorted(evaluation["origin_date"].unique())
    assert len(origins) >= 1
    table = frame_with(at, "random_share")
    assert table["origin_date"].tolist() == origins
    candidates = (
        evaluation[~evaluation["is_baseline_random"]]
        .drop_duplicates("definition")
        .sort_values(["sort_order", "definition"])["definition"]
        .tolist()
    )
    headers = [f"{d} (chosen)" if d == chosen else d for d in candidates]
    assert table.columns.tolist() == [
        "origin_date",
        "horizon_end",
        "members",
        *headers,
        "random_share",
        "random_share_low",
        "random_share_high",
    ]
    for definition, header in zip(candidates, headers, strict=True):
        want = evaluation[evaluation["definition"] == definition].set_index("origin_date")
        assert table[header].tolist() == pytest.approx(
            want.loc[origins, "ratio_to_top_past_revenue"].tolist(), nan_ok=True
        )
    random = evaluation[evaluation["definition"] == "random"].set_index("origin_date")
    assert table["random_share"].tolist() == pytest.approx(
        random.loc[origins, "share_of_horizon_revenue"].tolist()
    )
    assert table["random_share_low"].tolist() == pytest.approx(
        random.loc[origins, "share_low"].tolist()
    )
    assert table["random_share_high"].tolist() == pytest.approx(
        random.loc[origins, "share_high"].tolist()
    )
    # the ratio and share charts
    assert len(at.get("vega_lite_chart")) == 2


def test_evidence_page_shows_the_forecast_at_every_origin(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Evidence")
    table = frame_with(at, "actual_revenue")
    expected = read(
        demo_snapshot, "select * from insiders.forecast_evaluation order by origin_date"
    )
    assert len(table) == len(expected) >= 1
    assert table["origin_date"].tolist() == expected["origin_date"].tolist()
    for column in (
        "forecast_revenue",
        "lower_bound",
        "upper_bound",
        "naive_revenue",
        "model_revenue",
        "actual_revenue",
        "relative_error",
        "naive_relative_error",
        "model_relative_error",
        "interval_width_ratio",
    ):
        assert table[column].tolist() == pytest.approx(expected[column].tolist()), column
    assert table["interval_covers_actual"].tolist() == expected["interval_covers_actual"].tolist()
    groups = frame_with(at, "trend_factor")
    forecast = read(
        demo_snapshot, "select * from insiders.revenue_forecast order by customer_group desc"
    )
    assert groups["customer_group"].tolist() == forecast["customer_group"].tolist()
    assert groups["expected_revenue"].tolist() == pytest.approx(
        forecast["expected_revenue"].tolist()
    )
    versus = frame_with(at, "insiders_mean")
    expected_versus = read(
        demo_snapshot,
        "select metric, insiders_mean from insiders.evidence "
        "where evidence_kind = 'insiders_vs_rest' order by evidence_id",
    )
    assert versus["metric"].tolist() == expected_versus["metric"].tolist()
    assert versus["insiders_mean"].tolist() == pytest.approx(
        expected_versus["insiders_mean"].tolist()
    )
    text = " ".join(m.value for m in at.markdown)
    median = one(
        demo_snapshot, "select median(abs(relative_error)) from insiders.forecast_evaluation"
    )
    assert f"by {median:.1%} (median absolute relative error)" in text
    assert not at.error


# Clusters


def test_clusters_page_shows_one_profile_row_per_cluster(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Clusters")
    profile = frame_with(at, "mean_monetary")
    expected = read(
        demo_snapshot, "select cluster_id, cluster_name from insiders.cluster_profile order by 1"
    )
    assert len(profile) == len(expected) >= 2
    assert profile["cluster"].tolist() == [
        f"{i} · {n}" for i, n in zip(expected["cluster_id"], expected["cluster_name"], strict=True)
    ]
    selection = frame_with(at, "silhouette")
    assert len(selection) == one(demo_snapshot, "select count(*) from ml.model_selection")
    assert selection["is_chosen"].tolist()[0]
    # size, revenue share, recency, frequency, monetary, and the embedding's scatter
    assert len(at.get("vega_lite_chart")) == 6
    assert not at.error


# Insiders


def test_insiders_country_filter_keeps_only_that_country(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Insiders")
    everyone = frame_with(at, "customer_id")
    assert len(everyone) == one(demo_snapshot, "select count(*) from insiders.members")
    # the second most common country: a filter that must drop rows
    country = everyone["country"].value_counts().index[1]
    at.multiselect(key="insiders_countries").set_value([country])
    run(at)
    shown = frame_with(at, "customer_id")
    assert set(shown["country"]) == {country}
    assert len(shown) == one(
        demo_snapshot, "select count(*) from insiders.members where country = ?", [country]
    )
    assert 0 < len(shown) < len(everyone)


def test_insiders_search_keeps_only_matching_ids(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Insiders")
    part = frame_with(at, "customer_id")["customer_id"].iloc[0][:3]
    at.text_input(key="insiders_search").input(part)
    run(at)
    shown = frame_with(at, "customer_id")["customer_id"].tolist()
    expected = read(
        demo_snapshot,
        "select customer_id from insiders.members where contains(customer_id, ?) "
        "order by monetary desc, customer_id",
        [part],
    )["customer_id"].tolist()
    assert shown == expected
    assert all(part in customer for customer in shown)


def test_insiders_search_is_never_sql(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Insiders")
    at.text_input(key="insiders_search").input(INJECTION)
    run(at)
    assert "No members match the filters" in messages(at)
    assert all("customer_id" not in frame.value.columns for frame in at.dataframe)
    assert not at.error


def test_cluster_and_minimum_monetary_filters(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Insiders")
    members = read(demo_snapshot, "select cluster_id, monetary from insiders.members")
    floor = float(members["monetary"].median())
    cluster = int(members["cluster_id"].iloc[0])
    at.multiselect(key="insiders_clusters").set_value([cluster])
    at.number_input(key="insiders_min_monetary").set_value(floor)
    run(at)
    shown = frame_with(at, "customer_id")
    assert set(shown["cluster_id"]) == {cluster}
    assert shown["monetary"].min() >= floor
    assert len(shown) == ((members["cluster_id"] == cluster) & (members["monetary"] >= floor)).sum()


def test_csv_download_is_the_filtered_rows(demo_snapshot: Path, open_app, downloads) -> None:
    at = open_app(demo_snapshot, "Insiders")
    country = one(
        demo_snapshot,
        "select country from insiders.members group by 1 order by count(*) desc, 1 limit 1",
    )
    floor = float(
        one(
            demo_snapshot,
            "select median(monetary) from insiders.members where country = ?",
            [country],
        )
    )
    at.multiselect(key="insiders_countries").set_value([country])
    at.number_input(key="insiders_min_monetary").set_value(floor)
    downloads.clear()
    run(at)

    button = at.get("download_button")
    assert [b.label for b in button] == ["Download CSV"]
    csv_files = [data for name, data in downloads if name == "insiders_members.csv"]
    assert len(csv_files) == 1
    expected = read(
        demo_snapshot,
        "select * from insiders.members where country = ? and monetary >= ? "
        "order by monetary desc, customer_id",
        [country, floor],
    )
    downloaded = pd.read_csv(io.BytesIO(csv_files[0]), dtype={"customer_id": str})
    assert 0 < len(downloaded) < one(demo_snapshot, "select count(*) from insiders.members")
    assert downloaded.columns.tolist() == expected.columns.tolist()
    assert downloaded["customer_id"].tolist() == expected["customer_id"].tolist()
    assert downloaded["monetary"].tolist() == pytest.approx(expected["monetary"].tolist())
    assert csv_files[0].decode("utf-8") == expected.to_csv(index=False)
    # the table on the page shows the same rows and columns
    shown = frame_with(at, "customer_id")
    assert shown.columns.tolist() == expected.columns.tolist()
    assert shown["customer_id"].tolist() == expected["customer_id"].tolist()


def test_customer_detail_shows_that_customers_history(demo_snapshot: Path, open_app) -> None:
    customer = one(
        demo_snapshot,
        """
        select h.customer_id from insiders.membership_history as h
        join insiders.members as m using (customer_id)
        group by 1 order by count(*) desc, 1 limit 1
        """,
    )
    at = open_app(demo_snapshot, "Insiders")
    chooser = at.selectbox(key="insiders_customer")
    assert chooser.label == "Customer"
    assert chooser.options == frame_with(at, "customer_id")["customer_id"].tolist()
    chooser.set_value(customer)
    run(at)

    history = frame_with(at, "valid_from")
    expected = read(
        demo_snapshot,
        "select * from insiders.membership_history where customer_id = ? "
        "order by membership_number",
        [customer],
    )
    assert len(history) == len(expected) >= 1
    assert history["membership_number"].tolist() == expected["membership_number"].tolist()
    assert history["valid_from"].tolist() == expected["valid_from"].tolist()
    assert any(s.value == f"Customer {customer}" for s in at.subheader)
    features = frame_with(at, "feature").set_index("feature")["value"]
    assert features["customer_id"] == customer
    forecast = read(
        demo_snapshot,
        "select probability_alive, expected_revenue from insiders.customer_forecast "
        "where customer_id = ?",
        [customer],
    ).iloc[0]
    shown = metrics(at)
    assert shown["Probability alive"] == f"{forecast['probability_alive']:.1%}"
    assert shown["Expected revenue"] == f"£{forecast['expected_revenue']:,.0f}"


def test_customer_choice_follows_the_filters(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Insiders")
    at.text_input(key="insiders_search").input(INJECTION)
    run(at)
    assert not at.get("selectbox")
    assert "no customer to show" in messages(at)


# Movement


def test_movement_page_shows_moves_and_rules(demo_snapshot: Path, open_app) -> None:
    at = open_app(demo_snapshot, "Movement")
    movement = frame_with(at, "entered")
    expected = read(
        demo_snapshot,
        "select evaluation_date, entered, left_program, stayed "
        "from insiders.membership_movement order by 1",
    )
    assert movement["evaluation_date"].tolist() == expected["evaluation_date"].tolist()
    assert movement["entered"].tolist() == expected["entered"].tolist()
    assert movement["left_program"].tolist() == expected["left_program"].tolist()

    rules = read(demo_snapshot, "select * from insiders.eligibility_rules order by rule_id")
    assert len(rules) >= 1
    shown = frame_with(at, "rule")
    assert shown["rule"].tolist() == rules["rule"].tolist()
    text = " ".join(m.value for m in at.markdown)
    for _, rule in rules.iterrows():
        assert f"**Rule {rule['rule_id']}.** Customers with " in text
        assert f"Precision {rule['precision']:.1%}" in text
        assert f"recall {rule['recall']:.1%}" in text
    assert " > " not in text.split("**Rule 1.**")[1].split("**Rule 2.**")[0]
    assert not at.error


# States


@pytest.mark.parametrize("page", list(PAGES))
def test_no_snapshot_yet_says_how_to_build_one(tmp_path: Path, open_app, page: str) -> None:
    missing = tmp_path / "bi" / "insiders_bi.duckdb"
    at = open_app(missing, page)
    [info] = at.info
    assert "No BI snapshot yet" in info.value
    assert str(missing) in info.value
    assert "`insiders run`" in info.value
    assert not at.metric and not at.dataframe and not at.error
    assert not missing.exists()


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("update main.snapshot_info set schema_version = 0", "schema version is 0"),
        ("drop table main.snapshot_info", "no snapshot_info"),
        ("alter table insiders.members drop column country", "insiders.members lacks column"),
        ("drop table insiders.evidence", "insiders.evidence is missing"),
        ("drop table insiders.definition_choice", "insiders.definition_choice is missing"),
        (
            "alter table insiders.revenue_forecast drop column naive_revenue",
            "insiders.revenue_forecast lacks column(s) naive_revenue",
        ),
    ],
)
@pytest.mark.parametrize("page", list(PAGES))
def test_older_schema_is_a_warning(
    demo_snapshot: Path, tmp_path: Path, open_app, statement: str, problem: str, page: str
) -> None:
    old = altered_copy(demo_snapshot, tmp_path / "old.duckdb", statement)
    at = open_app(old, page)
    [warning] = at.warning
    assert "older schema" in warning.value
    assert problem in warning.value
    assert "`insiders run` publishes a new one" in warning.value
    assert not at.metric and not at.dataframe and not at.error


def test_empty_member_list_says_so(demo_snapshot: Path, tmp_path: Path, open_app) -> None:
    empty = altered_copy(demo_snapshot, tmp_path / "empty.duckdb", "delete from insiders.members")
    at = open_app(empty, "Insiders")
    assert "No members yet" in messages(at)
    assert not at.dataframe and not at.get("download_button") and not at.error
    for page in ("Overview", "Evidence", "Clusters", "Movement"):
        assert not open_app(empty, page).error


def test_empty_tables_everywhere_say_so(demo_snapshot: Path, tmp_path: Path, open_app) -> None:
    empty = altered_copy(
        demo_snapshot,
        tmp_path / "empty.duckdb",
        *(f"delete from {name}" for name in REQUIRED_COLUMNS),
    )
    for page in PAGES:
        at = open_app(empty, page)
        assert "yet" in messages(at), page
        assert not at.error and not at.warning
    assert metrics(open_app(empty))["Insiders"] == "—"


def test_unreadable_snapshot_is_one_line_of_error(tmp_path: Path, open_app) -> None:
    broken = tmp_path / "insiders_bi.duckdb"
    broken.write_bytes(b"not a database" * 1000)
    at = open_app(broken, "Insiders")
    [error] = at.error
    assert error.value.startswith("Could not read the schema from the BI snapshot")
    assert "\n" not in error.value


def test_a_new_snapshot_is_read_without_a_restart(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    live = tmp_path / "bi" / "insiders_bi.duckdb"
    altered_copy(demo_snapshot, live)
    at = open_app(live)
    old_run = metrics(at)["Run"]
    newer = altered_copy(
        demo_snapshot,
        tmp_path / "bi" / ".next.partial",
        "update main.snapshot_info set run_id = 'the-next-run'",
        "update insiders.kpis set insiders = 7",
    )
    os.replace(newer, live)  # as publish_snapshot swaps it in
    run(at)
    shown = metrics(at)
    assert shown["Run"] == "the-next-run" != old_run
    assert shown["Insiders"] == "7"


# dashboard.snapshot


def test_snapshot_path_prefers_the_variable_then_the_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    monkeypatch.delenv("INSIDERS_BI_DIR", raising=False)
    monkeypatch.setenv("INSIDERS_WAREHOUSE", str(tmp_path / "wh" / "w.duckdb"))
    assert snapshot_path() == tmp_path / "wh" / "bi" / "insiders_bi.duckdb"
    monkeypatch.setenv(SNAPSHOT_ENV, str(tmp_path / "elsewhere.duckdb"))
    assert snapshot_path() == tmp_path / "elsewhere.duckdb"


def test_the_dashboard_reads_only_published_tables() -> None:
    published = {f"{schema}.{table}" for schema, table in SNAPSHOT_TABLES}
    assert set(REQUIRED_COLUMNS) <= published
    assert set(ORDER_BY) == set(REQUIRED_COLUMNS)
    assert set(CUSTOMER_TABLES) <= set(REQUIRED_COLUMNS)


def test_demo_snapshot_has_no_problems(demo_snapshot: Path) -> None:
    snapshot = Snapshot(demo_snapshot)
    assert snapshot.problems() == []
    info = snapshot.info()
    assert info is not None
    assert info.schema_version == SCHEMA_VERSION
    assert info.run_id == one(demo_snapshot, "select run_id from main.snapshot_info")
    assert info.table_rows["insiders.members"] == one(
        demo_snapshot, "select count(*) from insiders.members"
    )


@pytest.mark.parametrize(
    "search", [INJECTION, "'; drop table insiders.members; --", "%", "_", '" or 1=1 --']
)
def test_member_search_is_a_parameter(demo_snapshot: Path, search: str) -> None:
    snapshot = Snapshot(demo_snapshot)
    assert snapshot.members(MemberFilter(search=search)).empty
    assert snapshot.customer_rows("insiders.membership_history", search).empty
    assert one(demo_snapshot, "select count(*) from insiders.members") > 0


def test_member_filters_match_pandas(demo_snapshot: Path) -> None:
    snapshot = Snapshot(demo_snapshot)
    everyone = read(demo_snapshot, "select * from insiders.members")
    assert len(snapshot.members(MemberFilter())) == len(everyone)
    customer = everyone["customer_id"].iloc[0]
    part = customer[1:4]
    countries = tuple(everyone["country"].value_counts().index[:2])
    cluster = int(everyone["cluster_id"].iloc[0])
    floor = float(everyone["monetary"].quantile(0.25))
    got = snapshot.members(MemberFilter(part.upper(), countries, (cluster,), floor))
    want = everyone[
        everyone["customer_id"].str.lower().str.contains(part.lower(), regex=False)
        & everyone["country"].isin(countries)
        & (everyone["cluster_id"] == cluster)
        & (everyone["monetary"] >= floor)
    ]
    assert sorted(got["customer_id"]) == sorted(want["customer_id"])
    assert got["monetary"].is_monotonic_decreasing
    assert snapshot.members(MemberFilter(countries=("Atlantis",))).empty
    assert snapshot.members(MemberFilter(cluster_ids=(-1,))).empty


def test_only_known_tables_are_read(demo_snapshot: Path) -> None:
    snapshot = Snapshot(demo_snapshot)
    with pytest.raises(ValueError, match="not a table the dashboard reads"):
        snapshot.read_table("insiders.members; drop table insiders.members")
    with pytest.raises(ValueError, match="not a table the dashboard reads"):
        snapshot.customer_rows("ml.model_selection", "x")


def test_each_read_sees_the_file_the_path_names_now(demo_snapshot: Path, tmp_path: Path) -> None:
    """A connection another session holds open on the old file must not hide the new one
    (DuckDB caches database instances per path within a process)."""
    live = altered_copy(demo_snapshot, tmp_path / "insiders_bi.duckdb")
    before = fingerprint(live)
    holder = duckdb.connect(str(live), read_only=True)
    try:
        newer = altered_copy(
            demo_snapshot, tmp_path / "next.duckdb", "update main.snapshot_info set run_id = 'r2'"
        )
        os.replace(newer, live)
        assert fingerprint(live) != before
        info = Snapshot(live).info()
        assert info is not None and info.run_id == "r2"
        with pytest.raises(SnapshotChangedError):
            Snapshot(live, expected=before).read_table("insiders.kpis")
    finally:
        holder.close()
    assert fingerprint(tmp_path / "missing.duckdb") is None
