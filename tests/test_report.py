"""The report on a warehouse built by a real run: it shows the nine answers of
insiders.answers in order, its figures equal plain DuckDB queries over the ml tables and
the marts, synthetic demo data is announced on top, and every value is escaped."""

from __future__ import annotations

import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import duckdb
import markupsafe
import pandas as pd
import pytest

from models_py import published
from models_py.locations import DUCKDB_CONFIG
from models_py.report import (
    DEFINITION_SECTION,
    REPORT_TABLES,
    SYNTHETIC_BANNER,
    _definition_text,
    _md_plain,
    build_report,
)
from orchestration.dbt_runner import run_dbt
from orchestration.report_asset import read_report_tables, write_report

# The marketing team's questions, in the order they asked them (the contract of
# insiders.answers, which the dashboard codes against too).
QUESTIONS = (
    "Who is eligible for the Insiders program?",
    "How many customers are in the program?",
    "What characterises them?",
    "What share of revenue do they bring?",
    "What revenue can we expect from them in the next months?",
    "What makes a person eligible?",
    "What removes a person from the program?",
    "What guarantees they are better than the rest?",
    "What actions would raise revenue?",
)
HOSTILE = "<script>alert('x')</script> & the best customers"


def rows(warehouse: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """One query on a warehouse file, opened as the pipeline and dbt open it."""
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def value(warehouse: Path, sql: str, params: list[Any] | None = None) -> Any:
    return rows(warehouse, sql, params)[0][0]


def prepared(source: Path, target: Path, synthetic: bool, description: str | None) -> Path:
    """A copy of a run's warehouse whose loaded files are (not) synthetic demo data and,
    with ``description``, whose chosen definition is described so; the dbt models
    downstream rebuilt (a real dbt build with its tests)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    con = duckdb.connect(str(target), config=DUCKDB_CONFIG)
    try:
        con.execute(
            "alter table raw.loaded_files add column if not exists is_synthetic boolean "
            "default false"
        )
        con.execute("update raw.loaded_files set is_synthetic = ?", [synthetic])
        if description is not None:
            con.execute(
                "update ml.insiders_definitions set description = ? where definition = "
                "(select definition from insiders.definition_choice where is_chosen)",
                [description],
            )
    finally:
        con.close()
    select = ["stg_online_retail__loaded_files+"]
    if description is not None:
        select.append("stg_ml__insiders_definitions+")
    assert run_dbt("build", target, {}, ["--select", *select]), "dbt build failed"
    return target


@pytest.fixture(scope="module")
def run_warehouse(demo_snapshot: Path) -> Path:
    """The warehouse of the session's real `insiders run` (left untouched)."""
    return demo_snapshot.parent.parent / "warehouse.duckdb"


@pytest.fixture(scope="module")
def real(run_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Not synthetic, and a chosen definition whose description holds HTML."""
    folder = tmp_path_factory.mktemp("report_real")
    return prepared(run_warehouse, folder / "warehouse.duckdb", False, HOSTILE)


@pytest.fixture(scope="module")
def synthetic(run_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report_synthetic")
    return prepared(run_warehouse, folder / "warehouse.duckdb", True, None)


@pytest.fixture(scope="module")
def written(real: Path) -> tuple[str, str]:
    """The Markdown and HTML files the report asset writes for ``real``."""
    paths, _ = write_report(real)
    return paths["markdown"].read_text(), paths["html"].read_text()


def answers_of(warehouse: Path) -> dict[int, tuple[str, str, float | None, str | None]]:
    return {
        r[0]: r[1:]
        for r in rows(
            warehouse,
            "select question_number, question, answer, figure, figure_unit "
            "from insiders.answers order by question_number",
        )
    }


# --- the mart -------------------------------------------------------------------------


def test_the_answers_mart_asks_the_nine_questions_in_order(real):
    answers = answers_of(real)
    assert list(answers) == list(range(1, 10))
    assert tuple(q for q, *_ in answers.values()) == QUESTIONS
    assert all(answer.strip() for _, answer, _, _ in answers.values())
    assert {unit for _, _, figure, unit in answers.values() if figure is not None} <= {
        "customers",
        "share",
        "currency",
    }
    as_of = value(real, "select max(as_of) from ml.customer_segments")
    assert rows(real, "select distinct as_of from insiders.answers") == [(as_of,)]


def test_the_answers_equal_plain_queries_over_the_ml_tables_and_marts(real):
    """Every headline figure recomputed here from ml.* and marts.* with plain DuckDB."""
    as_of = value(real, "select max(as_of) from ml.customer_segments")
    chosen = value(real, "select definition from insiders.definition_choice where is_chosen")
    members = pd.DataFrame(
        rows(
            real,
            "select d.monetary, d.frequency, d.recency_days from ml.definition_members m "
            "join marts.dim_customers d using (customer_id) "
            "where m.evaluation_date = m.as_of and m.definition = ?",
            [chosen],
        ),
        columns=["monetary", "frequency", "recency_days"],
    ).astype(float)
    customers = value(real, "select count(*) from marts.dim_customers")
    customer_revenue = float(value(real, "select sum(monetary) from marts.dim_customers"))
    all_revenue = float(
        value(real, "select sum(revenue) from marts.fct_transactions where invoice_at < ?", [as_of])
    )
    answers = answers_of(real)
    n = len(members)
    assert n > 0

    q1 = answers[1][1]
    assert q1.startswith(f"The {n:,} customers chosen by the definition {chosen} (")
    assert HOSTILE in q1  # the description, verbatim, in the mart's plain text
    assert answers[1][2] == n

    assert answers[2][1].startswith(f"{n:,} of {customers:,} customers ({n / customers:.1%})")
    assert answers[2][2:] == (n, "customers")

    q3 = answers[3][1]
    assert f"a median of {statistics.median(members['frequency']):,.0f} invoices" in q3
    assert f"net revenue of GBP {statistics.median(members['monetary']):,.0f}" in q3
    assert f"a median of {statistics.median(members['recency_days']):,.0f} days ago" in q3
    assert answers[3][2] == pytest.approx(statistics.median(members["monetary"]))

    share = members["monetary"].sum() / customer_revenue
    q4 = answers[4][1]
    assert q4.startswith(f"{share:.1%} of customer revenue and ")
    assert f"{members['monetary'].sum() / all_revenue:.1%} of all revenue" in q4
    assert answers[4][2:] == (pytest.approx(share), "share")

    forecast, low, high = rows(
        real,
        "select forecast_revenue, lower_bound, upper_bound from ml.group_forecasts "
        "where definition = ? and origin_date = as_of",
        [chosen],
    )[0]
    q5 = answers[5][1]
    assert f"spend GBP {float(forecast):,.0f} (net revenue) from {as_of}" in q5
    assert f"between GBP {float(low):,.0f} and GBP {float(high):,.0f}" in q5
    assert answers[5][2:] == (pytest.approx(float(forecast)), "currency")

    assert f"definition {chosen} picks at the monthly re-evaluation" in answers[6][1]
    first_rule = value(
        real,
        "select rule from ml.eligibility_rules where definition = ? order by rule_id limit 1",
        [chosen],
    )
    assert f"mostly: {first_rule} (" in answers[6][1]

    ended = value(
        real, "select count(*) from insiders.membership_history where valid_to is not null"
    )
    grace = 1  # dbt_project.yml's membership_grace_cycles, the run's default
    assert f"keeps the membership for {grace} more re-evaluation " in answers[7][1]
    assert f"So far {ended:,} memberships ended" in answers[7][1]

    evaluation = pd.DataFrame(
        rows(
            real,
            "select origin_date, definition, share_of_horizon_revenue, share_high "
            "from ml.definition_evaluation",
        ),
        columns=["origin", "definition", "share", "high"],
    )
    mine = evaluation[evaluation["definition"] == chosen].set_index("origin")
    random = evaluation[evaluation["definition"] == "random"].set_index("origin")
    assert len(mine) > 0, "the demo run evaluates at least one origin"
    above = sum(mine.loc[o, "share"] > random.loc[o, "high"] for o in mine.index)
    q8 = answers[8][1]
    assert f"at each of the {len(mine)} monthly origins" in q8
    assert f"took {mine['share'].min():.1%} to {mine['share'].max():.1%}" in q8
    assert f"range at {above} of {len(mine)} origins" in q8
    assert answers[8][2:] == (pytest.approx(mine["share"].mean()), "share")

    action = value(
        real,
        "select recommended_action from insiders.cluster_actions where is_insider",
    )
    assert f"cluster: {action};" in answers[9][1]


def test_before_any_clustering_the_nine_answers_say_what_is_missing(demo_warehouse):
    """A dbt build over empty ml tables: still nine rows, each saying what to run."""
    answers = answers_of(demo_warehouse)
    assert tuple(q for q, *_ in answers.values()) == QUESTIONS
    assert all("run insiders run" in answer for _, answer, _, _ in answers.values())
    assert all(figure is None for _, _, figure, _ in answers.values())
    tables = read_report_tables(demo_warehouse)
    with pytest.raises(ValueError, match="empty marts: kpis"):
        build_report(tables)


# --- the report -----------------------------------------------------------------------


def test_the_report_shows_the_nine_answers_in_order_verbatim(real, written):
    markdown, html = written
    answers = answers_of(real)
    headings = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    numbered = [h for h in headings if h != DEFINITION_SECTION]
    assert numbered == [f"{n}. {q}" for n, q in enumerate(QUESTIONS, start=1)]
    assert re.findall(r"<h2>(\d)\. ", html) == [str(n) for n in range(1, 10)]
    for number, (question, answer, _, _) in answers.items():
        assert f"<h2>{number}. {markupsafe.escape(question)}</h2>" in html
        assert f"<p>{markupsafe.escape(answer)}</p>" in html
        assert _md_plain(answer) in markdown
    assert html.count("data:image/png;base64,") == 7
    # The definition section sits between questions 5 and 6.
    assert markdown.index("## 5. ") < markdown.index(f"## {DEFINITION_SECTION}")
    assert markdown.index(f"## {DEFINITION_SECTION}") < markdown.index("## 6. ")


def test_the_report_takes_its_answers_and_profile_from_the_marts(real, tmp_path):
    """Change the marts and the report changes with them: it composes no answer and
    recomputes no cluster profile of its own."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(real, copy)
    con = duckdb.connect(str(copy), config=DUCKDB_CONFIG)
    try:
        con.execute(
            "update insiders.answers set answer = 'Ask the marts.' where question_number = 3"
        )
        con.execute("update insiders.cluster_profile set median_monetary = 123456.78")
    finally:
        con.close()
    report = build_report(read_report_tables(copy))
    assert report.answers[QUESTIONS[2]] == "Ask the marts."
    assert "<p>Ask the marts.</p>" in report.html
    assert "123,456.78" in report.markdown and "123,456.78" in report.html


def test_html_and_markdown_escape_what_the_warehouse_says(written):
    markdown, html = written
    assert "<script>" not in html
    assert markupsafe.escape(HOSTILE) in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; the best customers" in html
    assert "<script>" not in markdown
    assert r"\<script\>alert('x')\</script\> & the best customers" in markdown


def test_synthetic_demo_data_is_announced_on_top_and_in_every_answer(synthetic, real, written):
    assert value(synthetic, "select is_synthetic from insiders.kpis") is True
    assert all(
        a.startswith("(synthetic demo data) ") for _, a, _, _ in answers_of(synthetic).values()
    )
    paths, report = write_report(synthetic)
    markdown, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert report.is_synthetic
    assert markdown.splitlines()[0] == f"> **{SYNTHETIC_BANNER}**"
    body = html[html.index("<body>") + len("<body>") :].lstrip()
    assert body.startswith(f'<div class="synthetic" role="alert">{SYNTHETIC_BANNER}</div>')
    # Not synthetic: no banner, no mark.
    assert value(real, "select is_synthetic from insiders.kpis") is False
    assert not any("synthetic" in a for _, a, _, _ in answers_of(real).values())
    real_markdown, real_html = written
    assert SYNTHETIC_BANNER not in real_markdown and SYNTHETIC_BANNER not in real_html
    assert 'class="synthetic"' not in real_html


def test_a_forced_definition_is_said_in_the_answers(real, tmp_path):
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(real, copy)
    assert run_dbt(
        "build", copy, {"insiders_definition": "rfm_champions"}, ["--select", "definition_choice+"]
    )
    answers = answers_of(copy)
    assert (
        "definition rfm_champions (forced by the analyst through var insiders_definition)"
        in (answers[1][1])
    )
    assert "the definition was forced by the analyst" in answers[6][1]


# --- without a warehouse --------------------------------------------------------------


def test_the_report_reads_the_published_report_tables():
    assert tuple(table for _, table in published.REPORT_TABLES) == REPORT_TABLES
    assert set(published.REPORT_TABLES) <= set(published.PUBLISHED_TABLES)
    assert ("insiders", "answers") in published.REPORT_TABLES


def test_a_missing_mart_or_a_missing_question_is_named(real):
    tables = read_report_tables(real)
    without = {k: v for k, v in tables.items() if k != "definition_choice"}
    with pytest.raises(ValueError, match="needs the marts: definition_choice"):
        build_report(without)
    eight = dict(tables, answers=tables["answers"].iloc[:8])
    with pytest.raises(
        ValueError, match=r"insiders.answers holds questions \[1, .*8\], not 1 to 9"
    ):
        build_report(eight)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1. not a list", r"1\. not a list"),
        ("- not a bullet", r"\- not a bullet"),
        ("# not a heading", r"\# not a heading"),
        ("a *b* `c` [d](e) <f> | g", r"a \*b\* \`c\` \[d\](e) \<f\> \| g"),
        ("top_past_revenue 73.6%", "top_past_revenue 73.6%"),
    ],
)
def test_plain_text_in_markdown_shows_as_it_is(text, shown):
    assert _md_plain(text) == shown


# --- the definition section, for every way a definition is chosen -------------------

RATIOS = {
    "insiders_cluster": [0.70, 0.80, 0.90],
    "top_past_revenue": [1.0, 1.0, 1.0],
    "expected_revenue": [1.05, 0.98, 1.04],
}


def _choice(chosen: str, chosen_by: str, origins: int = 3) -> pd.DataFrame:
    """definition_choice rows as dbt makes them: the record of each ratio list."""
    ranked = sorted(RATIOS, key=lambda d: (min(RATIOS[d]) < 1, -statistics.mean(RATIOS[d])))
    return pd.DataFrame(
        [
            {
                "definition": definition,
                "description": f"the {definition} rule",
                "sort_order": order,
                "origins": origins,
                "mean_ratio": statistics.mean(ratios) if origins else None,
                "min_ratio": min(ratios) if origins else None,
                "max_ratio": max(ratios) if origins else None,
                "origins_below_top_past_revenue": sum(r < 1 for r in ratios) if origins else 0,
                "qualifies": bool(origins) and min(ratios) >= 1,
                "evidence_rank": ranked.index(definition) + 1,
                "is_chosen": definition == chosen,
                "chosen_by": chosen_by if definition == chosen else None,
            }
            for order, (definition, ratios) in enumerate(RATIOS.items(), start=1)
        ]
    )


def _evaluation(origins: int = 3) -> pd.DataFrame:
    dates = [pd.Timestamp("2011-07-10") + pd.DateOffset(months=m) for m in range(origins)]
    return pd.DataFrame(
        [
            {"origin_date": date, "definition": definition}
            for date in dates
            for definition in RATIOS
        ],
        columns=["origin_date", "definition"],
    )


def _section(chosen: str, chosen_by: str, origins: int = 3) -> str:
    choice = _choice(chosen, chosen_by, origins)
    row = choice[choice["is_chosen"]].iloc[0]
    return " ".join(_definition_text(choice, _evaluation(origins), row).split())


def test_the_definition_section_explains_the_best_evidence_and_a_rival():
    section = _section("top_past_revenue", "best_evidence")
    assert "Each was tried at 3 monthly origins, from 2011-07-10 to 2011-09-10" in section
    assert "The chosen definition (**top_past_revenue**) took 1.00x at every origin" in section
    cluster = statistics.mean(RATIOS["insiders_cluster"])
    assert f"Insiders cluster would have taken {cluster:.2f}x of what" in section
    assert "expected_revenue did slightly better on average (1.023x against 1.000x)" in section
    assert "fell below the top spenders at 1 of 3 origins (lowest 0.980x)" in section


def test_the_definition_section_says_forced_none_qualified_and_no_origin():
    forced = _section("insiders_cluster", "forced")
    assert "forced by the analyst (var `insiders_definition` = `insiders_cluster`)" in forced
    assert "The evidence would have pointed to **top_past_revenue**" in forced
    none = _section("expected_revenue", "best_mean_none_qualified")
    assert "No definition matched the top spenders at every origin" in none
    assert "(**expected_revenue**) has the best mean" in none
    assert "below the top spenders at 1 of 3 origins" in none
    early = _section("insiders_cluster", "no_evaluation_origin", origins=0)
    assert "not enough history for the evaluation yet" in early
    assert "Until there is, the Insiders are chosen by **insiders_cluster**" in early
