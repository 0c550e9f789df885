"""The dashboard, driven with Streamlit's AppTest against a snapshot from a real run.

Every figure a test expects is read from the snapshot directly with DuckDB, never
through ``dashboard.snapshot``, so a wrong query in the dashboard fails a test.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from dashboard.snapshot import (
    CUSTOMER_TABLES,
    OPTIONAL_COLUMNS,
    ORDER_BY,
    REQUIRED_COLUMNS,
    MemberFilter,
    Snapshot,
    SnapshotChangedError,
    fingerprint,
    snapshot_path,
)
from models_py.locations import SCHEMA_VERSION, SNAPSHOT_ENV
from models_py.published import PUBLISHED_TABLES

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
BANNER = "Synthetic demo data: these figures are not real."
NO_ANSWERS = "This snapshot predates the answers table; run `insiders run` again."


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


def page_warnings(at: AppTest) -> list[str]:
    """The page's warnings but the synthetic banner (the demo snapshot may carry it)."""
    return [w.value for w in at.warning if w.value != BANNER]


def unescaped(markdown: str) -> str:
    """Markdown source as the text it renders: CommonMark turns a backslash before ASCII
    punctuation into that character."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def after_title(at: AppTest) -> Any:
    """The element right below the page's title."""
    nodes = list(at.main)
    titles = [i for i, node in enumerate(nodes) if type(node).__name__ == "Title"]
    assert titles, "no title on the page"
    return nodes[titles[0] + 1]


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
    assert not at.error and not page_warnings(at)


def test_evidence_names_the_chosen_definition_and_why(demo_snapshot: Path, open_app) -> None:
    """The definition, why, and the forecast in words: on the Evidence page (the
    Overview shows the nine answers of ``insiders.answers`` instead)."""
    at = open_app(demo_snapshot, "Evidence")
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
    assert f"interval £{forecast['lower_bound']:,.0f} to £{forecast['upper_bound']:,.0f}" in text
    assert f"is £{forecast['naive_revenue']:,.0f}." in text
    assert f"took on average {chosen['mean_share']:.1%} of the next months' revenue" in text
    for gone in ("calibrated", "backtest", "cut-off", "hold-out"):
        assert gone not in (text + captions).lower()


def test_evidence_says_when_the_definition_was_forced(
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
    at = open_app(altered, "Evidence")
    text = " ".join(m.value for m in at.markdown)
    assert f"The Insiders are **`{forced}`**" in text
    assert "**Forced** by the run's configuration" in text
    best = one(altered, "select definition from insiders.definition_choice where evidence_rank = 1")
    assert f"the evidence ranks `{best}` first" in text
    assert not at.error


# Answers with characters Markdown would read as formatting: the page must show them as
# written. (question, answer) per question number.
ANSWERS = {
    n: (
        f"Question {n}: what about *this* and #{n}?",
        f"{n}. Answer {n} of the mart: 1,234 customers (12.5%), £5,678.90 and $3 or $4, "
        f"definition top_past_revenue, a_b_c, [link](x) <b>{n}</b> & ~done~ | ok.",
    )
    for n in range(1, 10)
}
# Where each answer points for its detail (the page's url path).
DETAIL_LINKS = {
    1: "insiders",
    3: "clusters",
    5: "evidence",
    6: "movement",
    7: "movement",
    8: "evidence",
    9: "clusters",
}


def with_answers(snapshot: Path, target: Path, rows: dict[int, tuple[str, str]]) -> Path:
    """A copy of the snapshot with an ``insiders.answers`` table as the mart's contract
    has it (one row per question)."""
    values = ", ".join("(?, ?, ?, ?, ?, date '2011-12-09')" for _ in rows)
    params: list[Any] = []
    for number, (question, answer) in rows.items():
        params += [number, question, answer, float(number), "customers"]
    path = altered_copy(
        snapshot,
        target,
        "drop table if exists insiders.answers",
        """
        create table insiders.answers (
            question_number integer primary key, question varchar not null,
            answer varchar not null, figure double, figure_unit varchar, as_of date
        )
        """,
    )
    if rows:
        con = duckdb.connect(str(path))
        try:
            con.execute(f"insert into insiders.answers values {values}", params)
        finally:
            con.close()
    return path


def test_overview_shows_the_nine_answers_of_the_mart_verbatim(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    snapshot = with_answers(demo_snapshot, tmp_path / "answers.duckdb", ANSWERS)
    at = open_app(snapshot)
    expected = read(snapshot, "select * from insiders.answers order by question_number")
    assert expected["question_number"].tolist() == list(range(1, 10))
    shown = [unescaped(m.value) for m in at.markdown]
    answers = [m for m in shown if m.startswith("**") and "Answer " in m]
    assert answers == [
        f"**{row.question_number}. {row.question}**  \n{row.answer}"
        for row in expected.itertuples()
    ]
    # the pointers to the pages with the detail, and the page's charts and figures
    nodes = list(at.main)
    pointers: dict[int, str | None] = {}
    for node, following in pairwise(nodes):
        if type(node).__name__ == "Markdown" and "Answer " in node.value:
            number = int(unescaped(node.value)[2:].split(".")[0])
            is_link = type(following).__name__ == "PageLink"
            pointers[number] = following.proto.page if is_link else None
    assert pointers == {n: DETAIL_LINKS.get(n) for n in range(1, 10)}
    assert len(at.get("vega_lite_chart")) == 1
    assert metrics(at)["Insiders"] == f"{one(snapshot, 'select insiders from insiders.kpis'):,}"
    assert "Answers as of 2011-12-09." in [c.value for c in at.caption]
    assert NO_ANSWERS not in messages(at)
    assert not at.error and not page_warnings(at)


def test_overview_of_a_snapshot_without_answers_says_to_run_again(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    """A snapshot of schema version 2, published before the answers table and the
    synthetic flag existed: the page shows it, and says what it lacks."""
    older = altered_copy(
        demo_snapshot,
        tmp_path / "older.duckdb",
        "drop table if exists insiders.answers",
        "alter table main.snapshot_info drop column if exists is_synthetic",
        "alter table insiders.kpis drop column if exists is_synthetic",
        "update main.snapshot_info set schema_version = 2",
    )
    at = open_app(older)
    assert [i.value for i in at.info] == [NO_ANSWERS]
    assert not at.error and not page_warnings(at)
    # the rest of the page is there
    assert metrics(at)["Run"] == one(older, "select run_id from main.snapshot_info")
    assert len(at.get("vega_lite_chart")) == 1
    assert Snapshot(older).problems() == []


def test_overview_with_an_empty_answers_table_says_so(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    at = open_app(with_answers(demo_snapshot, tmp_path / "none.duckdb", {}))
    assert "No answers yet" in messages(at)
    assert NO_ANSWERS not in messages(at)
    assert not at.error


def test_answers_table_without_its_columns_is_an_older_schema(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    snapshot = altered_copy(
        with_answers(demo_snapshot, tmp_path / "a.duckdb", ANSWERS),
        tmp_path / "b.duckdb",
        "alter table insiders.answers drop column answer",
    )
    at = open_app(snapshot)
    [warning] = at.warning
    assert "insiders.answers lacks column(s) answer" in warning.value


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
    assert metrics(at)["Interval covered"] == "—"
    assert not at.error
    at = open_app(short, "Evidence")
    text = " ".join(m.value for m in at.markdown)
    assert "The Insiders are **`insiders_cluster`**" in text
    assert "No origin could be evaluated yet" in text
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
    assert not at.error and not page_warnings(at)


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


def test_rule_thresholds_of_a_thousand_or_more_come_from_the_conditions(
    demo_snapshot: Path, tmp_path: Path, open_app
) -> None:
    """The rule text writes thresholds as ``1,234.50``; the words come from the JSON
    conditions, whole, with the looser of two bounds on one feature dropped."""
    conditions = [
        {"feature": "monetary", "operator": ">", "threshold": 866.6150207519531},
        {"feature": "frequency", "operator": ">", "threshold": 11.5},
        {"feature": "monetary", "operator": ">", "threshold": 1234.5},
        {"feature": "return_rate", "operator": "<=", "threshold": 0.04},
        {"feature": "recency_days", "operator": "<=", "threshold": 1500.25},
    ]
    snapshot = altered_copy(
        demo_snapshot,
        tmp_path / "rules.duckdb",
        f"""
        update insiders.eligibility_rules set
            rule = 'monetary > 866.62 and frequency > 11.50 and monetary > 1,234.50 '
                || 'and return_rate <= 0.04 and recency_days <= 1,500.25',
            conditions = '{json.dumps(conditions)}'
        where rule_id = 1
        """,
    )
    at = open_app(snapshot, "Movement")
    text = " ".join(m.value for m in at.markdown)
    first = text.split("**Rule 1.**")[1].split("**Rule 2.**")[0]
    assert first.startswith(
        " Customers with net spend above £1,234.50, purchases above 11.5, share of spend "
        "returned at most 4.0% and days since the last purchase at most 1,500.25: "
    )
    assert "866.62" not in first and "1,234.50 " not in first.replace("£1,234.50", "")
    assert frame_with(at, "rule")["rule"].iloc[0].startswith("monetary > 866.62")
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
        ("update main.snapshot_info set schema_version = 99", "newer: update the dashboard"),
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
        assert not at.error and not page_warnings(at)
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


def synthetic_copy(snapshot: Path, target: Path, info: bool | None, kpis: bool | None) -> Path:
    """A copy with ``is_synthetic`` set on ``snapshot_info`` and ``kpis`` (None: no such
    column, as in snapshots published before the flag)."""
    statements = []
    for table, flag in (("main.snapshot_info", info), ("insiders.kpis", kpis)):
        statements.append(f"alter table {table} drop column if exists is_synthetic")
        if flag is not None:
            statements.append(
                f"alter table {table} add column is_synthetic boolean default {str(flag).lower()}"
            )
    return altered_copy(snapshot, target, *statements)


@pytest.mark.parametrize("page", list(PAGES))
def test_synthetic_snapshot_shows_the_banner_at_the_top(
    demo_snapshot: Path, tmp_path: Path, open_app, page: str
) -> None:
    synthetic = synthetic_copy(demo_snapshot, tmp_path / "s.duckdb", info=True, kpis=True)
    at = open_app(synthetic, page)
    top = after_title(at)
    assert type(top).__name__ == "Warning" and top.value == BANNER
    assert [w.value for w in at.warning].count(BANNER) == 1
    assert not at.error


@pytest.mark.parametrize(
    ("info", "kpis", "banner"),
    [
        (None, True, True),  # only the KPIs say so
        (False, False, False),
        (None, None, False),  # an older snapshot: no flag, no banner
    ],
)
def test_banner_follows_the_flag_and_tolerates_its_absence(
    demo_snapshot: Path,
    tmp_path: Path,
    open_app,
    info: bool | None,
    kpis: bool | None,
    banner: bool,
) -> None:
    snapshot = synthetic_copy(demo_snapshot, tmp_path / "s.duckdb", info=info, kpis=kpis)
    for page in ("Overview", "Movement"):
        at = open_app(snapshot, page)
        assert (BANNER in [w.value for w in at.warning]) is banner, page
        assert not at.error and not page_warnings(at)
    assert Snapshot(snapshot).problems() == []


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
    published = {f"{schema}.{table}" for schema, table in PUBLISHED_TABLES}
    assert set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS) <= published
    assert set(ORDER_BY) == set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    assert not set(OPTIONAL_COLUMNS) & set(REQUIRED_COLUMNS)
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


# Layering: the dashboard reads the snapshot and never imports the pipeline.

SHARED_LOCATIONS = (
    "SNAPSHOT_FILE",
    "PARQUET_LINK",
    "BI_DIR_ENV",
    "SNAPSHOT_ENV",
    "WAREHOUSE_ENV",
    "DEFAULT_WAREHOUSE",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "resolve_bi_dir",
    "resolve_warehouse",
)


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth of its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_dashboard_module_imports_orchestration() -> None:
    files = sorted((REPO_ROOT / "dashboard").rglob("*.py"))
    assert len(files) >= 8
    offenders = {
        str(f.relative_to(REPO_ROOT)): sorted(
            m for m in imported_modules(f) if m.split(".")[0] == "orchestration"
        )
        for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}
    # nor indirectly, through what it imports
    code = (
        "import sys, dashboard.snapshot, dashboard.ui, dashboard.answers; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('orchestration', 'dagster')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_shared_locations_are_defined_once() -> None:
    """The names the publisher and the dashboard agree on are assigned (or defined) only
    in ``models_py/locations.py``; everyone else imports them."""
    definers: dict[str, list[str]] = {}
    for folder in ("dashboard", "models_py", "orchestration"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names = [t.id for t in targets if isinstance(t, ast.Name)]
                elif isinstance(node, ast.FunctionDef):
                    names = [node.name]
                else:
                    continue
                for name in names:
                    if name in SHARED_LOCATIONS:
                        definers.setdefault(name, []).append(str(path.relative_to(REPO_ROOT)))
    assert definers == {name: ["models_py/locations.py"] for name in SHARED_LOCATIONS}
