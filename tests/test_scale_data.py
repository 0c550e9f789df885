"""The scale data generator (``bench/scale_data.py``) and the scale benchmark's reading
of a run's output (``bench/scale.py``).

The generator must give the scale benchmark N times the real store: N times the lines
and the customers, the real data's distributions, one file per real day, the real odd
lines in every copy, the same bytes for the same N. Every expected figure is computed
here with plain DuckDB over the real files (or written out by hand for a small source),
never read from the generator's output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import duckdb
import pytest

from bench.scale import (
    RunFigures,
    StepEvent,
    attribute,
    labelled,
    load_runs,
    markdown_table,
    parse_duration,
    parse_line,
)
from bench.scale_data import MANIFEST, ScaleDataError, generate, is_complete, split_line
from models_py.locations import DUCKDB_CONFIG
from orchestration.warehouse import load_files
from tests.conftest import SHARED_BY_DAY

FACTOR = 2
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def lines_of(folder: Path) -> str:
    """Every line of the daily files in ``folder``, as text, for a DuckDB query."""
    return (
        f"read_csv('{folder}/*.csv', header = true, all_varchar = true, filename = true,"
        " auto_detect = false, columns = {"
        + ", ".join(f"'{c}': 'VARCHAR'" for c in HEADER.split(","))
        + "})"
    )


def one(sql: str, params: list | None = None) -> tuple:
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchone()
    finally:
        con.close()


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.csv")}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SHARED_BY_DAY.is_dir(), f"real data missing: {SHARED_BY_DAY}"
    out = tmp_path_factory.mktemp("scaled") / f"{FACTOR}x"
    done = generate(FACTOR, out, SHARED_BY_DAY)
    assert done.written and done.files == len(list(SHARED_BY_DAY.glob("*.csv")))
    return out


def test_one_copy_is_the_real_data_byte_for_byte(tmp_path: Path):
    """Copy 0 keeps the real ids: at factor 1 every file is the real file, quoting,
    odd values and line ends included (nothing re-typed or re-quoted)."""
    generate(1, tmp_path, SHARED_BY_DAY)
    assert digests(tmp_path) == digests(SHARED_BY_DAY)


def test_lines_customers_and_invoices_scale_with_the_factor(scaled: Path):
    real = one(
        f"select count(*), count(distinct CustomerID), count(distinct InvoiceNo),"
        f" count(distinct StockCode) from {lines_of(SHARED_BY_DAY)}"
    )
    made = one(
        f"select count(*), count(distinct CustomerID), count(distinct InvoiceNo),"
        f" count(distinct StockCode) from {lines_of(scaled)}"
    )
    lines, customers, invoices, stock_codes = made
    # The bound is 5%; copies are exact, so the bound holds with room.
    assert abs(lines - FACTOR * real[0]) <= 0.05 * FACTOR * real[0]
    assert abs(customers - FACTOR * real[1]) <= 0.05 * FACTOR * real[1]
    # Exactly N times: every copy's customers and invoices are new ones...
    assert (lines, customers, invoices) == (FACTOR * real[0], FACTOR * real[1], FACTOR * real[2])
    # ...buying the same products.
    assert stock_codes == real[3]


def test_copies_shift_the_ids_and_keep_everything_else(scaled: Path):
    """Copy k of a line is the real line with CustomerID + k*100000 and the invoice's
    number + k*1000000 (letter prefix kept): every other field equal, line for line."""
    mismatched = one(
        f"""
        with expected as (
            select
                parse_filename(filename) as day,
                regexp_extract(InvoiceNo, '^[A-Za-z]*')
                    || (cast(regexp_extract(InvoiceNo, '[0-9]+$') as bigint) + k * 1000000)
                    as InvoiceNo,
                StockCode, Description, Quantity, InvoiceDate, UnitPrice,
                (cast(CustomerID as double) + k * 100000)::bigint || '.0' as CustomerID,
                Country
            from {lines_of(SHARED_BY_DAY)}, range(?) as copies(k)
        ),
        made as (
            select parse_filename(filename) as day, * exclude (filename)
            from {lines_of(scaled)}
        )
        select (select count(*) from (from expected except all from made))
            + (select count(*) from (from made except all from expected))
        """,
        [FACTOR],
    )[0]
    assert mismatched == 0


def _shape(folder: Path) -> dict[str, object]:
    """The per-line distributions the benchmark relies on."""
    shares = one(
        f"""
        select
            quantile_cont(cast(Quantity as integer), [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]),
            quantile_cont(cast(UnitPrice as double), [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]),
            avg((cast(Quantity as integer) < 0)::int),
            avg((CustomerID is null)::int),
            avg(starts_with(InvoiceNo, 'C')::int),
            avg(cast(Quantity as integer) * cast(UnitPrice as double))
        from {lines_of(folder)}
        """
    )
    countries = dict(
        duckdb.connect(config=DUCKDB_CONFIG)
        .execute(
            f"select Country, count(*) / sum(count(*)) over () from {lines_of(folder)} group by 1"
        )
        .fetchall()
    )
    return {
        "quantity": shares[0],
        "price": shares[1],
        "returns": shares[2],
        "no_customer": shares[3],
        "cancellations": shares[4],
        "line_value": shares[5],
        "countries": countries,
    }


def test_the_distributions_are_the_real_ones(scaled: Path):
    """Stated bounds: quantiles and the mean line value within 1% (relative), shares of
    returns, lines without a customer and cancellations within 0.5 points, every
    country's share of lines within 1 point (and the same countries)."""
    real, made = _shape(SHARED_BY_DAY), _shape(scaled)
    for key in ("quantity", "price"):
        assert made[key] == pytest.approx(real[key], rel=0.01), key
    assert made["line_value"] == pytest.approx(real["line_value"], rel=0.01)
    for key in ("returns", "no_customer", "cancellations"):
        assert abs(made[key] - real[key]) <= 0.005, key
    assert real["no_customer"] > 0.2  # guests are there to keep (25% of the real lines)
    assert set(made["countries"]) == set(real["countries"])
    for country, share in real["countries"].items():
        assert abs(made["countries"][country] - share) <= 0.01, country


def test_one_file_per_real_day_with_that_days_lines(scaled: Path):
    assert sorted(p.name for p in scaled.glob("*.csv")) == sorted(
        p.name for p in SHARED_BY_DAY.glob("*.csv")
    )
    per_day = """
        select parse_filename(filename), count(*),
            count(*) filter (where left(InvoiceDate, 10) <> parse_filename(filename, true))
        from {} group by all
    """
    con = duckdb.connect(config=DUCKDB_CONFIG)
    real = {d: n for d, n, _ in con.execute(per_day.format(lines_of(SHARED_BY_DAY))).fetchall()}
    made = con.execute(per_day.format(lines_of(scaled))).fetchall()
    con.close()
    assert {d: n for d, n, _ in made} == {d: FACTOR * n for d, n in real.items()}
    assert sum(wrong for _, _, wrong in made) == 0
    for path in scaled.glob("*.csv"):  # one header, the real one, first
        with open(path) as handle:
            assert handle.readline().rstrip("\n") == HEADER


def test_same_factor_same_bytes(scaled: Path, tmp_path: Path):
    again = tmp_path / "again"
    assert generate(FACTOR, again, SHARED_BY_DAY).written
    assert digests(again) == digests(scaled)


@pytest.fixture
def few_days(tmp_path: Path) -> Path:
    """Three real days: enough for the behaviour that does not depend on volume."""
    source = tmp_path / "few-days"
    source.mkdir()
    for path in sorted(SHARED_BY_DAY.glob("*.csv"))[:3]:
        (source / path.name).write_bytes(path.read_bytes())
    return source


def test_a_complete_folder_is_left_alone_and_an_incomplete_one_rewritten(
    tmp_path: Path, few_days: Path
):
    out = tmp_path / "2x"
    generate(2, out, few_days)
    first = sorted(out.glob("*.csv"))[0]
    stamp, original = first.stat().st_mtime_ns, first.read_bytes()
    assert is_complete(out, 2) and not is_complete(out, 3)
    assert not generate(2, out, few_days).written
    assert first.stat().st_mtime_ns == stamp
    with open(first, "ab") as handle:  # a file cut or grown: not the complete output
        handle.write(b"x")
    assert not is_complete(out, 2)
    assert generate(2, out, few_days).written
    assert first.read_bytes() == original
    (out / MANIFEST).unlink()  # interrupted before the manifest: rewritten
    assert generate(2, out, few_days).written and is_complete(out, 2)
    # Another source (a day more) is not the output this folder holds.
    extra = sorted(SHARED_BY_DAY.glob("*.csv"))[3]
    (few_days / extra.name).write_bytes(extra.read_bytes())
    assert generate(2, out, few_days).written
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(p.name for p in few_days.iterdir())


def test_refusals_are_one_line(tmp_path: Path, few_days: Path):
    with pytest.raises(ScaleDataError, match="factor 0: must be an integer >= 1"):
        generate(0, tmp_path / "out", few_days)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScaleDataError, match=r"no \*\.csv files"):
        generate(2, tmp_path / "out", empty)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ScaleDataError, match=r"notes\.txt") as caught:
        generate(1, busy, few_days)
    assert "\n" not in str(caught.value)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


# A small source with the odd lines a store's export has: a guest (no CustomerID), a
# cancellation, a bad-debt adjustment, a quoted description with a comma and a quote, and
# lines the loader quarantines (a bad quantity, a missing field, a bad CustomerID, a
# blank line). The good lines get new ids in every copy; the bad ones are copied as they
# are, so the loader quarantines N times as many.
ODD_SOURCE = "\n".join(
    [
        HEADER,
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,"
        "United Kingdom",
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom",
        'C536379,D,"RECORD FRAME 7"" SINGLE, SIZE ",-1,2010-12-01 09:41:00,27.5,14527.0,'
        "United Kingdom",
        "A563185,B,Adjust bad debt,1,2010-12-01 14:50:00,11062.06,,United Kingdom",
        "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,lots,2010-12-01 08:34:00,1.69,13047.0,"
        "United Kingdom",
        "536368,22960,JAM MAKING SET WITH JARS,6,2010-12-01 08:34:00,4.25,United Kingdom",
        "536369,21756,BATH BUILDING BLOCK WORD,3,2010-12-01 08:35:00,5.95,13047.0x,France",
        "",
        "",
    ]
)
ODD_EXPECTED_COPY_2 = [
    "2536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,217850.0,"
    "United Kingdom",
    "2536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom",
    'C2536379,D,"RECORD FRAME 7"" SINGLE, SIZE ",-1,2010-12-01 09:41:00,27.5,214527.0,'
    "United Kingdom",
    "A2563185,B,Adjust bad debt,1,2010-12-01 14:50:00,11062.06,,United Kingdom",
    # A bad quantity is still an 8-field record: its ids move, the bad value stays.
    "2536367,84879,ASSORTED COLOUR BIRD ORNAMENT,lots,2010-12-01 08:34:00,1.69,213047.0,"
    "United Kingdom",
    # Not 8 fields: copied as it is.
    "536368,22960,JAM MAKING SET WITH JARS,6,2010-12-01 08:34:00,4.25,United Kingdom",
    # A CustomerID that is not a number: the invoice moves, the odd value stays.
    "2536369,21756,BATH BUILDING BLOCK WORD,3,2010-12-01 08:35:00,5.95,13047.0x,France",
    "",
]


def test_odd_lines_are_in_every_copy_and_the_quarantine_scales(tmp_path: Path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "2010-12-01.csv").write_text(ODD_SOURCE)
    out = tmp_path / "out"
    generate(3, out, source)
    lines = (out / "2010-12-01.csv").read_text().split("\n")
    body = ODD_SOURCE.split("\n")[1:-1]
    assert lines[0] == HEADER and lines[-1] == ""
    assert lines[1 : 1 + len(body)] == body  # copy 0: the source as it is
    assert lines[1 + 2 * len(body) : 1 + 3 * len(body)] == ODD_EXPECTED_COPY_2
    assert len(lines) == 1 + 3 * len(body) + 1
    # The loader sees three times the source: three times the loaded and quarantined rows.
    real = load_files(tmp_path / "real.duckdb", [source])
    scaled = load_files(tmp_path / "scaled.duckdb", [out])
    assert not real.failed and not scaled.failed
    assert real.rows_quarantined >= 4
    assert (scaled.rows_loaded, scaled.rows_quarantined) == (
        3 * real.rows_loaded,
        3 * real.rows_quarantined,
    )


def test_split_line_puts_the_line_back_together():
    crlf = [line + "\r" for line in ODD_SOURCE.split("\n")]
    assert split_line(crlf[1])[1::2] == (536365, 17850)  # the ids found before the CR
    for line in ODD_SOURCE.split("\n") + crlf:
        head, invoice, middle, customer, tail = split_line(line)
        rebuilt = head + str(invoice or "") + middle + str(customer or "") + tail
        assert rebuilt == line


# The benchmark's reading of ``insiders run``'s output, both formats.
DAGSTER_LOG = [
    "2026-11-25 19:23:05 +0000 - dagster - DEBUG - insiders_job - 1a - 309 - raw_transactions"
    ' - STEP_START - Started execution of step "raw_transactions".',
    "2026-11-25 19:23:13 +0000 - dagster - DEBUG - insiders_job - 1a - 309 - raw_transactions"
    ' - STEP_SUCCESS - Finished execution of step "raw_transactions" in 2.98s.',
    "2026-11-25 19:24:32 +0000 - dagster - DEBUG - insiders_job - 1a - 309 - bi_snapshot - "
    'STEP_SUCCESS - Finished execution of step "bi_snapshot" in 303ms.',
    "2026-11-25 19:24:32 +0000 - dagster - ERROR - insiders_job - 1a - 309 - report - "
    'STEP_FAILURE - Execution of step "report" failed.',
]


def test_the_benchmark_reads_both_step_formats():
    assert [parse_line(line) for line in DAGSTER_LOG] == [
        StepEvent("start", "raw_transactions"),
        StepEvent("dagster_finish", "raw_transactions", 2.98),
        StepEvent("dagster_finish", "bi_snapshot", 0.303),
        StepEvent("dagster_finish", "report", None, failed=True),
    ]
    assert parse_line("raw_transactions  2.1 s  541,909 rows loaded\n") == StepEvent(
        "finish", "raw_transactions", 2.1, "541,909 rows loaded"
    )
    assert parse_line("customer_segmentation 17 s") == StepEvent(
        "finish", "customer_segmentation", 17.0, ""
    )
    assert parse_line("clustering     FAILED") == StepEvent("finish", "clustering", failed=True)
    assert parse_line("Insiders: 857 of 4329 customers (19.8%)") is None
    assert parse_line("report: /tmp/x/reports/insiders_report.html") is None
    assert [parse_duration(t) for t in ("0.83ms", "533ms", "5.6s", "4m52s", "1h4m", "x")] == [
        pytest.approx(0.00083),
        pytest.approx(0.533),
        5.6,
        292.0,
        3840.0,
        None,
    ]


def test_the_benchmark_cuts_a_run_into_stages():
    """startup until the first step starts, each step until its line, publish after
    the last; each stage's peak from the samples inside it; stages add up to the run."""
    samples = [(t / 10, 100 + t) for t in range(1, 100)]  # rising: the peak is at the end
    quiet = [
        (3.0, StepEvent("finish", "load", 1.0, "rows")),
        (7.0, StepEvent("finish", "cluster", 3.5)),
    ]
    stages = attribute(0.0, 9.95, quiet, samples)
    assert [(s.name, round(s.seconds, 2)) for s in stages] == [
        ("startup", 2.0),
        ("load", 1.0),
        ("cluster", 4.0),
        ("publish", 2.95),
    ]
    assert [s.peak_bytes for s in stages] == [120, 130, 170, 199]
    logged = [
        (1.5, StepEvent("start", "load")),
        (3.0, StepEvent("dagster_finish", "load", 1.2)),
        (3.1, StepEvent("start", "cluster")),
        (7.0, StepEvent("dagster_finish", "cluster", 3.9)),
    ]
    assert [round(s.seconds, 2) for s in attribute(0.0, 9.95, logged, samples)] == [
        1.5,
        1.5,
        4.0,
        2.95,
    ]
    # With --verbose both are printed: the quiet lines count, once.
    both = sorted(quiet + logged, key=lambda pair: pair[0])
    assert [s.name for s in attribute(0.0, 9.95, both, samples)] == [
        "startup",
        "load",
        "cluster",
        "publish",
    ]


def test_the_benchmark_names_stages_as_the_quiet_cli_does(tmp_path: Path):
    """Dagster's step keys get the quiet CLI's names (dbt's steps numbered in run
    order), so a table of runs before and after the quiet CLI lines up; --json figures
    read back into the same table."""
    logged = [
        (1.0, StepEvent("dagster_finish", "insiders_dbt_assets_3", 1.0)),
        (2.0, StepEvent("dagster_finish", "raw_transactions", 1.0)),
        (3.0, StepEvent("dagster_finish", "insiders_dbt_assets", 1.0)),
        (4.0, StepEvent("dagster_finish", "customer_segmentation", 1.0)),
    ]
    stages = attribute(0.0, 5.0, logged, [(t / 10, t) for t in range(50)])
    assert [name for name, _ in labelled(stages)] == [
        "startup",
        "dbt-1",
        "load",
        "dbt-2",
        "clustering",
        "publish",
    ]
    run = RunFigures(1, 541_909, "/data/1x", 2.5, True, 0, 5.0, 49, 40, 50, stages)
    saved = tmp_path / "figures.json"
    saved.write_text(json.dumps({"machine": {}, "runs": [asdict(run)]}))
    assert load_runs(saved) == [run]
    table = markdown_table([run, run])
    assert "| stage | 1x #1 s | 1x #1 peak GiB | 1x #2 s | 1x #2 peak GiB |" in table
    assert "| lines | 541,909 | | 541,909 | |" in table
