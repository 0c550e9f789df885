"""The Insiders report: the marketing team's nine questions answered in plain words.

The nine answers are the rows of ``insiders.answers``: dbt composes them once, and the
report, the dashboard and BI tools all show the same text. The report adds what a page
of prose can: the marts behind each answer as tables and charts, how the forecast is
made, and which definition of the Insiders the evidence chose and why. It recomputes
no figure a mart holds; it only lays the marts out.

Input is the marts of ``models_py.published.REPORT_TABLES`` as DataFrames, keyed by
table name; output is one document rendered by two Jinja2 templates
(``models_py/templates``): Markdown (charts as PNG files beside it) and a
self-contained HTML page (charts inlined, every value escaped). When the data is
synthetic demo data (``insiders.kpis.is_synthetic``) both say so on top.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import jinja2
import pandas as pd
from markupsafe import Markup

from models_py import published

# The tables the report reads, by table name (the keys of ``build_report``'s input);
# which schema each lives in is ``models_py.published.REPORT_TABLES``.
REPORT_TABLES: tuple[str, ...] = tuple(table for _, table in published.REPORT_TABLES)

# Of the tables with a row per customer the report shows the first members and a
# scatter of at most PLOT_POINTS customers (every k-th by id): a warehouse read
# through a mirror (PostgreSQL, Spark) sends only those rows (REPORT_SUMMARIES,
# portable SQL), not every customer.
MEMBERS_SHOWN = 10
PLOT_POINTS = 20_000
REPORT_SUMMARIES: dict[str, str] = {
    "insiders.members": "select * from insiders.members "
    f"order by member_rank, customer_id limit {MEMBERS_SHOWN}",
    "ml.customer_embedding": f"""
        with numbered as (
            select
                *,
                row_number() over (order by customer_id) as position,
                count(*) over () as customers
            from ml.customer_embedding
        )
        select customer_id, x, y, cluster_id, as_of, run_id from numbered
        where (position - 1) % cast(ceil(customers / {PLOT_POINTS}.0) as bigint) = 0
    """,
}

DEFINITION_SECTION = "Which definition of the Insiders, and why (questions 6 and 8)"

SYNTHETIC_BANNER = "SYNTHETIC DEMO DATA — figures are not real"

SEASON_CAVEAT = (
    "One year of data: a full yearly cycle has not been observed; the seasonal factor "
    "comes from the months seen once and could not be backtested."
)


@dataclass(frozen=True)
class Paragraph:
    """A paragraph. ``marked``: the report's own prose, whose ``**bold**`` and
    ``code`` markers the templates render; otherwise plain text shown as it is."""

    text: str
    marked: bool = False
    kind: Literal["paragraph"] = "paragraph"


@dataclass(frozen=True)
class Table:
    """A table of display strings (already formatted for people)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Image:
    """A chart, by its PNG file name (a key of ``Report.charts``)."""

    name: str
    kind: Literal["image"] = "image"


Block = Paragraph | Table | Image


@dataclass(frozen=True)
class Section:
    """A heading and what follows it."""

    heading: str
    blocks: tuple[Block, ...]


@dataclass
class Report:
    """The rendered report: Markdown and HTML texts, the charts as PNG bytes, the nine
    answers (question -> answer, in order, as ``insiders.answers`` has them)."""

    markdown: str
    html: str
    charts: dict[str, bytes] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    definition_section: str = ""
    is_synthetic: bool = False


def build_report(tables: Mapping[str, pd.DataFrame], title: str = "Insiders report") -> Report:
    """Lay out the marts as the report. Raises ValueError (one line) when a mart is
    missing or empty, or ``insiders.answers`` does not hold the nine questions."""
    missing = [name for name in REPORT_TABLES if name not in tables]
    if missing:
        raise ValueError(f"the report needs the marts: {', '.join(missing)}")
    empty = [n for n in ("kpis", "cluster_profile", "definition_choice") if tables[n].empty]
    if empty:
        raise ValueError(f"empty marts: {', '.join(empty)} (run the clustering first)")
    answers = tables["answers"].sort_values("question_number")
    if list(answers["question_number"]) != list(range(1, 10)):
        raise ValueError(
            f"insiders.answers holds questions {list(answers['question_number'])}, not 1 to 9"
        )
    kpis = tables["kpis"].sort_values("as_of").iloc[-1]
    is_synthetic = bool(kpis["is_synthetic"])
    profile = tables["cluster_profile"].sort_values("cluster_id")
    choice = _floats(
        tables["definition_choice"].sort_values("sort_order"),
        "mean_ratio",
        "min_ratio",
        "max_ratio",
        "mean_share",
    )
    chosen = _chosen(choice)
    evaluation = _floats(
        tables["definition_evaluation"].sort_values(["origin_date", "sort_order"]),
        "horizon_revenue",
        "share_of_horizon_revenue",
        "share_low",
        "share_high",
        "ratio_to_top_past_revenue",
    )
    forecast = _floats(
        tables["revenue_forecast"],
        *_MONEY,
        "trend_factor",
        "seasonal_factor",
        "model_median_abs_relative_error",
    )
    backtest = _floats(
        tables["forecast_evaluation"].sort_values("origin_date"),
        *_MONEY,
        "forecast_revenue",
        "actual_revenue",
        "relative_error",
        "naive_relative_error",
        "model_relative_error",
        "interval_width_ratio",
    )
    members = tables["members"].sort_values(["member_rank", "customer_id"])
    charts = {
        "revenue_share.png": _bar_chart(
            profile["cluster_name"],
            [profile["share_of_customers"], profile["share_of_revenue"]],
            ["share of customers", "share of revenue"],
            "Customers and revenue per cluster",
        ),
        "cluster_profiles.png": _profile_chart(profile),
        "embedding.png": _scatter(tables["customer_embedding"], profile),
        "monthly_revenue.png": _monthly_chart(tables["monthly_revenue"]),
        "membership_movement.png": _movement_chart(tables["membership_movement"]),
        "definition_evaluation.png": _definition_chart(evaluation, chosen["definition"]),
        "forecast_evaluation.png": _forecast_chart(backtest, forecast),
    }
    definition_text = _definition_text(choice, evaluation, chosen)
    details: dict[int, list[Block]] = {
        1: [
            Paragraph("The first ten, by rank:"),
            _table(
                members.head(MEMBERS_SHOWN)[
                    [
                        "member_rank",
                        "customer_id",
                        "country",
                        "cluster_name",
                        "frequency",
                        "monetary",
                        "member_since",
                    ]
                ]
            ),
        ],
        3: [
            Paragraph("Every cluster of the clustering, with the Insiders it holds:"),
            _table(_profile_table(profile)),
            Image("cluster_profiles.png"),
            Image("embedding.png"),
        ],
        4: [Image("revenue_share.png"), Image("monthly_revenue.png")],
        5: _forecast_blocks(forecast, backtest),
        6: [
            Paragraph(
                "Why this definition: the section above. The same membership in readable "
                "rules (a depth-3 decision tree on the customer features), with how "
                "faithful each rule is to the membership:"
            ),
            _table(
                tables["eligibility_rules"].sort_values("rule_id")[
                    ["rule_id", "rule", "customers", "precision", "recall"]
                ]
            ),
        ],
        7: [Image("membership_movement.png")],
        8: [
            Paragraph("In sample, per metric (insiders.evidence):"),
            _table(_evidence_table(tables["evidence"])),
        ],
        9: [
            _table(
                tables["cluster_actions"].sort_values(
                    ["share_of_revenue", "cluster_id"], ascending=[False, True]
                )[["cluster_name", "customers", "share_of_revenue", "recommended_action", "why"]]
            )
        ],
    }
    sections: list[Section] = []
    for row in answers.itertuples(index=False):
        number = int(row.question_number)
        blocks: list[Block] = [Paragraph(str(row.answer)), *details.get(number, [])]
        sections.append(Section(f"{number}. {row.question}", tuple(blocks)))
        if number == 5:
            sections.append(_definition_section(definition_text, choice, evaluation, chosen))
    context = {
        "title": title,
        "banner": SYNTHETIC_BANNER if is_synthetic else None,
        "intro": (
            f"As of {_date(kpis['as_of'])}. The answers are the rows of `insiders.answers`; "
            "the figures come from the warehouse's `insiders` marts of the latest run; "
            "net revenue in GBP."
        ),
        "sections": sections,
    }
    encoded = {name: base64.b64encode(png).decode() for name, png in charts.items()}
    return Report(
        markdown=_template("report.md.j2").render(**context),
        html=_template("report.html.j2").render(**context, charts=encoded),
        charts=charts,
        answers={str(r.question): str(r.answer) for r in answers.itertuples(index=False)},
        definition_section=definition_text,
        is_synthetic=is_synthetic,
    )


# --- rendering ------------------------------------------------------------------------

# Characters of plain text that Markdown would read as emphasis, code, a link, HTML or
# a table cell's end. An underscore inside a word (top_past_revenue) is no emphasis in
# CommonMark, so it stays readable in the .md file.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|])")
# In the report's own prose only what could become a link or HTML is escaped.
_MARKDOWN_UNSAFE = re.compile(r"([\\\[\]<>])")
# A line that Markdown would read as a heading or a bullet ("# x", "- x"), or as an
# ordered list item ("1. x": the escaped "." keeps it text).
_LINE_START = re.compile(r"^(\s*)(#|[-+](?=\s))", flags=re.MULTILINE)
_ORDERED_ITEM = re.compile(r"^(\s*\d+)([.)])(?=\s)", flags=re.MULTILINE)


def _md_escape(text: Any) -> str:
    """Plain text as Markdown inline text that shows exactly that text."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def _md_plain(text: Any) -> str:
    """A paragraph of plain text (from the warehouse) as Markdown showing exactly it:
    escaped inline, and no line of it starting a heading or a list."""
    escaped = _LINE_START.sub(r"\1\\\2", _md_escape(text))
    return _ORDERED_ITEM.sub(r"\1\\\2", escaped)


def _md_text(text: Any) -> str:
    """The report's prose: its ``**`` and backtick markers stay Markdown; ``<``, ``>``,
    brackets and backslashes in it (a value it quotes) are escaped."""
    return _MARKDOWN_UNSAFE.sub(r"\\\1", str(text))


def _md_cell(text: Any) -> str:
    """A table cell: plain text on one line."""
    return _md_escape(" ".join(str(text).split()))


def _html_marked(text: Any) -> Markup:
    """The report's prose as HTML: escaped first, then ``**x**`` -> ``<strong>`` and
    backticks -> ``<code>`` (so a quoted value cannot inject markup)."""
    out = html.escape(str(text))
    for marker, tag in (("**", "strong"), ("`", "code")):
        pieces = out.split(marker)
        out = "".join(
            piece if i % 2 == 0 else f"<{tag}>{piece}</{tag}>" for i, piece in enumerate(pieces)
        )
    return Markup(out)


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates beside this module (found through the package, editable or not);
    HTML autoescaped, undefined names an error."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("models_py", "templates"),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(
        md_plain=_md_plain,
        md_escape=_md_escape,
        md_text=_md_text,
        md_cell=_md_cell,
        html_marked=_html_marked,
    )
    return environment


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def _table(frame: pd.DataFrame) -> Table:
    """A mart's rows as display strings (``_format``), nulls blank."""
    shown = _format(frame)
    rows = tuple(
        tuple("" if _missing(v) else str(v) for v in row)
        for row in shown.itertuples(index=False, name=None)
    )
    return Table(tuple(str(c) for c in shown.columns), rows)


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


_MONEY = ("expected_revenue", "lower_bound", "upper_bound", "naive_revenue", "model_revenue")


def _floats(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The marts' DECIMAL columns arrive as Decimal objects: as floats to format."""
    out = frame.copy()
    for column in columns:
        if column in out:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def _chosen(choice: pd.DataFrame) -> pd.Series:
    rows = choice[choice["is_chosen"].fillna(False).astype(bool)]
    if rows.empty:
        raise ValueError("insiders.definition_choice has no chosen definition")
    return rows.iloc[0]


def _int(value: Any) -> int:
    return 0 if _missing(value) else int(value)


def _ratio(value: Any, digits: int = 2) -> str:
    return "n/a" if _missing(value) else f"{float(value):.{digits}f}x"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- the longer sections --------------------------------------------------------------


def _forecast_blocks(forecast: pd.DataFrame, backtest: pd.DataFrame) -> list[Block]:
    """How the forecast of question 5 is made, in the words of its mart row, and the
    tables of the current forecast and of the same forecast at every past origin."""
    rows = {r.customer_group: r for r in forecast.itertuples()}
    now = rows.get("insiders")
    if now is None:
        return [Image("forecast_evaluation.png")]
    everyone = rows.get("all_customers")
    text = (
        f"How: each group's net revenue over the last {now.horizon_days} days, the naive "
        f'forecast ("they will spend what they just spent": {_money(now.naive_revenue)} for '
        "the Insiders"
        + (f", {_money(everyone.naive_revenue)} for everyone" if everyone is not None else "")
        + f"), times a damped trend factor ({now.trend_factor:.2f}) and a seasonal factor "
        f"({now.seasonal_factor:.2f}). {SEASON_CAVEAT}"
    )
    if bool(now.season_observed):
        mood = "quieter" if now.seasonal_factor < 1 else "busier"
        text += (
            f" It is applied here: the coming months were {mood} than the last ones, "
            "relative to the trend, the one time they were seen."
        )
    else:
        text += (
            " It is not applied here (factor 1): not every month of the horizon and of the "
            "one before has been observed."
        )
    errors = _int(now.errors_behind_interval)
    if errors:
        text += (
            f" The interval spans the largest error this forecast made at the "
            f"{_plural(errors, 'earlier origin')}, widened by ({errors} + 1) / {errors}: a "
            "range from past errors, not a probability."
        )
    else:
        text += " No earlier error to learn from yet: the interval has a preset width."
    text += (
        f" The BG/NBD + Gamma-Gamma models (sum {_money(now.model_revenue)} for the Insiders) "
        "are used only to split the forecast among customers (`expected_revenue_next_months` "
        "in `insiders.members`)"
    )
    if not _missing(now.model_median_abs_relative_error):
        text += (
            f": as a group total they missed by a median of "
            f"{_pct(now.model_median_abs_relative_error)} at the past origins, because they "
            "assume steady buying"
        )
    blocks: list[Block] = [Paragraph(text + ".", marked=True), _table(_forecast_table(forecast))]
    if not backtest.empty:
        blocks.append(
            Paragraph("The same forecast made at every past origin, against what happened:")
        )
        blocks.append(_table(_backtest_table(backtest)))
    blocks.append(Image("forecast_evaluation.png"))
    return blocks


def _definition_section(
    text: str, choice: pd.DataFrame, evaluation: pd.DataFrame, chosen: pd.Series
) -> Section:
    blocks: list[Block] = [Paragraph(text, marked=True), _table(_choice_table(choice))]
    if not evaluation.empty:
        blocks.append(
            Paragraph(
                "Per origin, what each definition's members spent in the horizon as a "
                "multiple of what the same number of top past spenders spent (1.00x = as "
                "much), and the share of the horizon's revenue taken by the chosen "
                "definition and by random groups of the same size (their mean, and the "
                "central range of the draws):"
            )
        )
        blocks.append(_table(_evaluation_table(evaluation, chosen["definition"])))
    blocks.append(Image("definition_evaluation.png"))
    return Section(DEFINITION_SECTION, tuple(blocks))


def _definition_text(choice: pd.DataFrame, evaluation: pd.DataFrame, chosen: pd.Series) -> str:
    """The definition section in words: every candidate, how they were tried, and why
    the chosen one (``definition_choice.chosen_by``), quoting the marts' records."""
    name, how = chosen["definition"], chosen.get("chosen_by")
    origins = sorted(evaluation["origin_date"].unique()) if not evaluation.empty else []
    listed = "; ".join(f"**{r.definition}**: {r.description}" for r in choice.itertuples())
    text = f"The Insiders can be chosen in {len(choice)} ways: {listed}."
    if not origins:
        text += (
            " There is not enough history for the evaluation yet: no origin has a full "
            "horizon after it and enough history before it."
        )
        if how == "forced":
            return text + (
                f" The definition was forced by the analyst (var `insiders_definition` = `{name}`)."
            )
        return text + (
            f" Until there is, the Insiders are chosen by **{name}** ({chosen['description']})."
        )
    first, last = _date(origins[0]), _date(origins[-1])
    text += (
        f" Each was tried at {_int(chosen['origins'])} monthly origins, from {first} to {last}: "
        "with only the data before the origin it picked as many customers as the clustering's "
        "Insiders cluster then held, and we measured what they spent in the months after, "
        "against the same number of top customers by past net revenue (the one-line rule "
        "anybody could apply; 1.00x = as much as them) and against random groups."
    )
    cluster = choice[choice["definition"] == "insiders_cluster"]
    if not cluster.empty and name != "insiders_cluster":
        c = cluster.iloc[0]
        text += (
            f" The clustering's own Insiders cluster would have taken {_ratio(c['mean_ratio'])} "
            f"of what the top spenders took (mean over the origins; from "
            f"{_ratio(c['min_ratio'])} to {_ratio(c['max_ratio'])})."
        )
    record = (
        f"took {_ratio(chosen['mean_ratio'])} on average, from {_ratio(chosen['min_ratio'])} "
        f"to {_ratio(chosen['max_ratio'])}"
    )
    if _ratio(chosen["min_ratio"]) == _ratio(chosen["max_ratio"]):
        record = f"took {_ratio(chosen['min_ratio'])} at every origin"
    if how == "forced":
        best = choice[choice["evidence_rank"] == 1]
        text += (
            f" The definition was forced by the analyst (var `insiders_definition` = "
            f"`{name}`): it {record}."
        )
        if not best.empty and best.iloc[0]["definition"] != name:
            b = best.iloc[0]
            text += (
                f" The evidence would have pointed to **{b['definition']}** ({b['description']}; "
                f"mean {_ratio(b['mean_ratio'])}, below the top spenders at "
                f"{_int(b['origins_below_top_past_revenue'])} of {_int(b['origins'])} origins)."
            )
        else:
            text += " The evidence points to the same definition."
    elif how == "best_mean_none_qualified":
        below = _int(chosen["origins_below_top_past_revenue"])
        text += (
            " No definition matched the top spenders at every origin. The chosen definition "
            f"(**{name}**) has the best mean: it {record}, below the top spenders at "
            f"{below} of {_int(chosen['origins'])} origins."
        )
    elif how == "no_evaluation_origin":
        text += f" There is not enough history for the evaluation yet: **{name}** is used."
    else:
        text += (
            f" The chosen definition (**{name}**) {record}: it took at least what the top "
            f"spenders took at every one of the {_int(chosen['origins'])} origins, and has the "
            "best mean among the definitions that did (ties go to the simpler rule)."
        )
        if name == "top_past_revenue":
            text += " It is the top-spender rule itself: no cleverer rule beat it every time."
        rivals = choice[
            (choice["mean_ratio"] > chosen["mean_ratio"]) & ~choice["qualifies"].astype(bool)
        ]
        for r in rivals.itertuples():
            text += (
                f" {r.definition} did slightly better on average ({_ratio(r.mean_ratio, 3)} "
                f"against {_ratio(chosen['mean_ratio'], 3)}) but fell below the top spenders "
                f"at {_int(r.origins_below_top_past_revenue)} of {_int(r.origins)} origins "
                f"(lowest {_ratio(r.min_ratio, 3)}), so it is not the safer choice."
            )
    return text


# --- tables ---------------------------------------------------------------------------


def _profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "cluster_name",
        "customers",
        "insiders_members",
        "insiders_members_share",
        "share_of_customers",
        "share_of_revenue",
        "median_recency_days",
        "median_frequency",
        "median_monetary",
        "median_avg_ticket",
        "median_return_rate",
    ]
    return profile[[c for c in columns if c in profile]]


def _money(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):,.0f}"


def _forecast_table(forecast: pd.DataFrame) -> pd.DataFrame:
    order = {"insiders": 0, "all_customers": 1}
    data = forecast.sort_values("customer_group", key=lambda c: c.map(order))
    return pd.DataFrame(
        {
            "group": data["customer_group"],
            "customers": data["customers"].map(lambda v: f"{int(v):,}"),
            "forecast": data["expected_revenue"].map(_money),
            "interval": [
                f"{_money(lo)} to {_money(hi)}"
                for lo, hi in zip(data["lower_bound"], data["upper_bound"], strict=True)
            ],
            "naive (last horizon)": data["naive_revenue"].map(_money),
            "trend factor": data["trend_factor"].map(lambda v: f"{v:.2f}"),
            "seasonal factor": data["seasonal_factor"].map(lambda v: f"{v:.2f}"),
            "BG/NBD sum": data["model_revenue"].map(_money),
        }
    )


def _backtest_table(backtest: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin": pd.to_datetime(backtest["origin_date"]).dt.strftime("%Y-%m-%d"),
            "Insiders": backtest["customers"],
            "forecast": backtest["forecast_revenue"].map(_money),
            "interval": [
                f"{_money(lo)} to {_money(hi)}"
                for lo, hi in zip(backtest["lower_bound"], backtest["upper_bound"], strict=True)
            ],
            "naive": backtest["naive_revenue"].map(_money),
            "BG/NBD sum": backtest["model_revenue"].map(_money),
            "actual": backtest["actual_revenue"].map(_money),
            "forecast error": backtest["relative_error"].map(_signed_pct),
            "naive error": backtest["naive_relative_error"].map(_signed_pct),
            "BG/NBD error": backtest["model_relative_error"].map(_signed_pct),
            "covered?": backtest["interval_covers_actual"].map(
                lambda v: "n/a" if pd.isna(v) else ("yes" if v else "no")
            ),
            "width (of forecast)": backtest["interval_width_ratio"].map(_pct),
            "errors behind interval": backtest["errors_behind_interval"],
        }
    )


def _choice_table(choice: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "definition": choice["definition"],
            "origins": choice["origins"].map(_int),
            "mean ratio": choice["mean_ratio"].map(lambda v: _ratio(v, 3)),
            "lowest": choice["min_ratio"].map(lambda v: _ratio(v, 3)),
            "highest": choice["max_ratio"].map(lambda v: _ratio(v, 3)),
            "origins below top spenders": choice["origins_below_top_past_revenue"].map(_int),
            "never below": choice["qualifies"].map(lambda v: "yes" if v else "no"),
            "evidence rank": choice["evidence_rank"].map(_int),
            "chosen": [
                f"yes ({how})" if is_chosen else ""
                for is_chosen, how in zip(choice["is_chosen"], choice["chosen_by"], strict=True)
            ],
        }
    )


def _evaluation_table(evaluation: pd.DataFrame, chosen: str) -> pd.DataFrame:
    definitions = evaluation[evaluation["definition"] != "random"]
    order = definitions.drop_duplicates("definition").sort_values("sort_order")["definition"]
    table = definitions.pivot(
        index="origin_date", columns="definition", values="ratio_to_top_past_revenue"
    )[list(order)].map(lambda v: _ratio(v, 3))
    table.columns = [f"{c} (chosen)" if c == chosen else c for c in table.columns]
    shares = evaluation.set_index(["origin_date", "definition"])["share_of_horizon_revenue"]
    table[f"{chosen} share"] = [_pct(shares.get((o, chosen))) for o in table.index]
    random = evaluation[evaluation["definition"] == "random"].set_index("origin_date")
    if not random.empty:
        table["random share (range of draws)"] = [
            f"{_pct(random.loc[o, 'share_of_horizon_revenue'])} "
            f"({_pct(random.loc[o, 'share_low'])} to {_pct(random.loc[o, 'share_high'])})"
            if o in random.index
            else "n/a"
            for o in table.index
        ]
    table.index = pd.to_datetime(table.index).strftime("%Y-%m-%d")
    return table.rename_axis("origin").reset_index()


def _evidence_table(evidence: pd.DataFrame) -> pd.DataFrame:
    """insiders.evidence as shown: means, the interval of the difference, the test."""
    data = _floats(
        evidence, "insiders_mean", "others_mean", "difference", "ci_low", "ci_high", "p_value"
    )
    return pd.DataFrame(
        {
            "metric": data["metric"],
            "Insiders": data["insiders"].map(_int),
            "others": data["others"].map(_int),
            "Insiders' mean": data["insiders_mean"],
            "others' mean": data["others_mean"],
            "difference": data["difference"],
            "interval from": data["ci_low"],
            "interval to": data["ci_high"],
            "confidence": data["confidence"].map(_pct),
            "Mann-Whitney": data["p_value"].map(_p_value),
        }
    )


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    """Shares as percentages, money rounded: a table for people, not for machines."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, Decimal)).any():
            out[column] = out[column].astype(float)
        if (
            column.startswith("share_")
            or column.endswith("_share")
            or column
            in (
                "precision",
                "recall",
            )
        ):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        elif pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
        elif pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def _p_value(value: float) -> str:
    return "p < 1e-300" if value == 0 else f"p = {value:.2g}"


def _pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.1%}"


def _signed_pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):+.1%}"


def _date(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


# --- charts ---------------------------------------------------------------------------


def _figure(width: float = 7, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _bar_chart(labels, series, names, title) -> bytes:
    import numpy as np

    plt, fig, ax = _figure()
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (values, name) in enumerate(zip(series, names, strict=True)):
        ax.bar(x + i * width, values, width, label=name)
    ax.set_xticks(x + width * (len(series) - 1) / 2, labels, rotation=20, ha="right")
    ax.set_title(title)
    ax.legend()
    return _png(plt, fig)


def _profile_chart(profile: pd.DataFrame) -> bytes:
    columns = ["recency_vs_base", "frequency_vs_base", "monetary_vs_base", "ticket_vs_base"]
    return _bar_chart(
        profile["cluster_name"],
        [profile[c] for c in columns],
        [c.replace("_vs_base", "") for c in columns],
        "Cluster means as a multiple of the whole base (1 = like everyone)",
    )


def plot_points(embedding: pd.DataFrame) -> pd.DataFrame:
    """The customers the scatter shows: every k-th by id, at most PLOT_POINTS (the rule
    of REPORT_SUMMARIES' query, so the plot is the same whether the warehouse sent
    every customer or only those)."""
    ordered = embedding.sort_values("customer_id", kind="stable").reset_index(drop=True)
    step = max(1, -(-len(ordered) // PLOT_POINTS))
    return ordered.iloc[::step]


def _scatter(embedding: pd.DataFrame, profile: pd.DataFrame) -> bytes:
    embedding = plot_points(embedding)
    plt, fig, ax = _figure(7, 5)
    names = dict(zip(profile["cluster_id"], profile["cluster_name"], strict=True))
    for cluster_id, group in embedding.groupby("cluster_id"):
        ax.scatter(group["x"], group["y"], s=4, alpha=0.6, label=names.get(cluster_id, cluster_id))
    ax.set_title("Customers in two dimensions, coloured by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8)
    return _png(plt, fig)


def _monthly_chart(monthly: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure()
    data = monthly.sort_values("month_start")
    months = pd.to_datetime(data["month_start"]).dt.strftime("%Y-%m")
    ax.bar(months, data["insiders_revenue"].astype(float), label="Insiders")
    ax.bar(
        months,
        data["others_revenue"].astype(float),
        bottom=data["insiders_revenue"].astype(float),
        label="everyone else",
    )
    ax.set_title("Revenue per month")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    return _png(plt, fig)


def _movement_chart(movement: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure()
    data = movement.sort_values("evaluation_date")
    dates = pd.to_datetime(data["evaluation_date"]).dt.strftime("%Y-%m-%d")
    ax.bar(dates, data["stayed"], label="stayed")
    ax.bar(dates, data["entered"], bottom=data["stayed"], label="entered")
    ax.bar(dates, -data["left_program"], label="left")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title("Members at each monthly re-evaluation")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    return _png(plt, fig)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _definition_chart(evaluation: pd.DataFrame, chosen: str) -> bytes:
    plt, fig, ax = _figure(7, 3.8)
    data = evaluation[evaluation["definition"] != "random"]
    if data.empty:
        _no_data(ax, "No evaluation origin yet: not enough history")
    else:
        for definition, group in data.sort_values("sort_order").groupby("definition", sort=False):
            group = group.sort_values("origin_date")
            ax.plot(
                pd.to_datetime(group["origin_date"]).dt.strftime("%Y-%m-%d"),
                group["ratio_to_top_past_revenue"],
                marker="o",
                linewidth=3 if definition == chosen else 1.2,
                color="black" if definition == chosen else None,
                zorder=5 if definition == chosen else 2,
                label=f"{definition} (chosen)" if definition == chosen else definition,
            )
        ax.axhline(1, color="black", linewidth=0.6, linestyle="--")
        ax.tick_params(axis="x", rotation=45)
        ax.set_ylabel("x what the top past spenders took")
        ax.legend(fontsize=7)
    ax.set_title("Each definition's next-months revenue against the top past spenders")
    return _png(plt, fig)


def _forecast_chart(backtest: pd.DataFrame, forecast: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure(7, 3.8)
    labels = list(pd.to_datetime(backtest["origin_date"]).dt.strftime("%Y-%m-%d"))
    points = list(backtest["forecast_revenue"])
    lows, highs = list(backtest["lower_bound"]), list(backtest["upper_bound"])
    now = forecast[forecast["customer_group"] == "insiders"]
    if not now.empty:
        row = now.iloc[0]
        labels.append(f"{_date(row['period_start'])}\n(now)")
        points.append(row["expected_revenue"])
        lows.append(row["lower_bound"])
        highs.append(row["upper_bound"])
    if not labels:
        _no_data(ax, "No forecast yet")
    else:
        points_ = pd.Series(points, dtype=float)
        ax.errorbar(
            labels,
            points_,
            yerr=[points_ - pd.Series(lows, dtype=float), pd.Series(highs, dtype=float) - points_],
            fmt="o",
            capsize=5,
            label="forecast and interval",
        )
        if not backtest.empty:
            ax.scatter(
                labels[: len(backtest)],
                backtest["actual_revenue"],
                color="black",
                marker="s",
                zorder=3,
                label="actual",
            )
            ax.scatter(
                labels[: len(backtest)],
                backtest["naive_revenue"],
                color="grey",
                marker="x",
                zorder=3,
                label="naive",
            )
        ax.tick_params(axis="x", rotation=45)
        ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
        ax.legend(fontsize=8)
    ax.set_title("The Insiders' next-months revenue: forecast at each origin vs actual (GBP)")
    return _png(plt, fig)
