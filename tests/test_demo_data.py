"""The synthetic data must be reproducible and carry the real data's quirks.

Demo runs and downstream tests rely on both: byte-identical files make results
comparable between runs, and the quirks (cancellations, guests, postage, free
items, bad lines) are what the loader and the dbt models have to cope with.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from models_py.demo_data import DemoData, generate_transactions, write_demo_data
from models_py.ingest import COLUMNS

KAGGLE_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country,"
PLAIN_HEADER = KAGGLE_HEADER.rstrip(",")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# layout -> (encoding, date regex, parser returning a datetime or raising ValueError)
LAYOUTS = {
    "kaggle": (
        "cp1252",
        re.compile(r"\d{2}-[A-Z][a-z]{2}-\d{2}"),
        # strptime's %b depends on the locale; the file must not.
        lambda v: datetime(2000 + int(v[7:9]), MONTHS.index(v[3:6]) + 1, int(v[0:2])),
    ),
    "uci": (
        "utf-8",
        re.compile(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}"),
        lambda v: datetime.strptime(v, "%m/%d/%Y %H:%M"),
    ),
    "daily": (
        "utf-8",
        re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"),
        lambda v: datetime.strptime(v, "%Y-%m-%d %H:%M:%S"),
    ),
}


def _rows(data: bytes, encoding: str) -> list[list[str]]:
    """All records of a written file, header first, read the way a loader would."""
    return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DemoData, bytes]]:
    """One default-sized file per layout, written once for the whole module."""
    out = {}
    for layout in LAYOUTS:
        result = write_demo_data(tmp_path_factory.mktemp(layout), layout=layout)
        out[layout] = (result, result.path.read_bytes())
    return out


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_transactions(customers=1000, seed=42)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_same_arguments_give_identical_bytes(tmp_path: Path, layout: str) -> None:
    first = write_demo_data(tmp_path / "a", customers=150, seed=7, layout=layout)
    second = write_demo_data(tmp_path / "b", customers=150, seed=7, layout=layout)
    other = write_demo_data(tmp_path / "c", customers=150, seed=8, layout=layout)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()
    counts = (first.lines, first.customers, first.bad_lines)
    assert counts == (second.lines, second.customers, second.bad_lines)


def test_default_file_is_reproducible(
    tmp_path: Path, written: dict[str, tuple[DemoData, bytes]]
) -> None:
    again = write_demo_data(tmp_path / "nested" / "dir")  # creates missing directories
    assert again.path == tmp_path / "nested" / "dir" / "Ecommerce.csv"
    assert again.path.read_bytes() == written["kaggle"][1]


def test_written_file_names(written: dict[str, tuple[DemoData, bytes]]) -> None:
    assert written["kaggle"][0].path.name == "Ecommerce.csv"
    assert written["uci"][0].path.name == "Online Retail.csv"
    assert written["daily"][0].path.name == "transactions.csv"


def test_kaggle_layout(written: dict[str, tuple[DemoData, bytes]]) -> None:
    _, data = written["kaggle"]
    lines = data.decode("cp1252").split("\n")
    assert lines[0] == KAGGLE_HEADER
    assert b"\xa3" in data  # the pound sign, Windows-1252 encoded
    assert b"\r" not in data
    rows = _rows(data, "cp1252")
    full = [r for r in rows[1:] if len(r) >= 8]
    assert all(len(r) == 9 and r[8] == "" for r in full)  # the trailing empty column
    assert all(line.endswith(",") for line in lines[1:] if line.count(",") > 3)
    assert any("£" in r[2] for r in full)


@pytest.mark.parametrize("layout", ["uci", "daily"])
def test_plain_layouts(written: dict[str, tuple[DemoData, bytes]], layout: str) -> None:
    _, data = written[layout]
    text = data.decode("utf-8")  # must not raise
    assert text.split("\n", 1)[0] == PLAIN_HEADER
    assert b"\r" not in data
    rows = _rows(data, "utf-8")
    assert all(len(r) == 8 for r in rows[1:] if len(r) >= 8)
    assert any("£" in r[2] for r in rows[1:] if len(r) >= 8)


def test_daily_customer_ids_are_floats(written: dict[str, tuple[DemoData, bytes]]) -> None:
    rows = _rows(written["daily"][1], "utf-8")
    ids = [r[6] for r in rows[1:] if len(r) >= 8 and r[6]]
    assert ids
    assert all(re.fullmatch(r"\d{5}\.0", i) for i in ids)


@pytest.mark.parametrize("layout", ["kaggle", "uci"])
def test_customer_ids_are_plain(written: dict[str, tuple[DemoData, bytes]], layout: str) -> None:
    rows = _rows(written[layout][1], LAYOUTS[layout][0])
    assert all(re.fullmatch(r"\d{5}", r[6]) for r in rows[1:] if len(r) >= 8 and r[6])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_dates_follow_the_layout(written: dict[str, tuple[DemoData, bytes]], layout: str) -> None:
    encoding, pattern, parse = LAYOUTS[layout]
    rows = _rows(written[layout][1], encoding)
    dates = [r[4] for r in rows[1:] if len(r) >= 8]
    unparseable = []
    for value in dates:
        try:
            stamp = parse(value)
        except ValueError:
            unparseable.append(value)
            continue
        assert pattern.fullmatch(value), value
        assert datetime(2010, 12, 1) <= stamp < datetime(2011, 12, 10)
        if layout != "kaggle":
            assert 8 <= stamp.hour < 20 or (stamp.hour, stamp.minute) == (20, 0)
    assert len(unparseable) == 1  # the one deliberately bad date


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_counts_match_the_file(written: dict[str, tuple[DemoData, bytes]], layout: str) -> None:
    result, data = written[layout]
    rows = _rows(data, LAYOUTS[layout][0])
    assert result.lines == len(data.decode(LAYOUTS[layout][0]).splitlines()) - 1
    assert result.lines == len(rows) - 1  # no record spans two physical lines
    assert result.customers == len({r[6] for r in rows[1:] if len(r) >= 7 and r[6]})
    assert result.customers == 1000
    assert result.bad_lines == 5
    assert 20_000 <= result.lines <= 60_000


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_five_bad_lines_in_the_body(
    written: dict[str, tuple[DemoData, bytes]], layout: str
) -> None:
    rows = _rows(written[layout][1], LAYOUTS[layout][0])
    body = rows[1:]
    full = [(i, r) for i, r in enumerate(body) if len(r) >= 8]
    short = [i for i, r in enumerate(body) if len(r) < 8]
    no_invoice = [i for i, r in full if r[0] == ""]
    no_stock = [i for i, r in full if r[1] == ""]
    bad_quantity = [i for i, r in full if r[3] == "abc"]
    assert [len(body[i]) for i in short] == [4]
    assert len(no_invoice) == len(no_stock) == len(bad_quantity) == 1
    for i in short + no_invoice + no_stock + bad_quantity:
        assert 0 < i < len(body) - 1, "bad lines belong inside the body"
    assert all(re.fullmatch(r"-?\d+", r[3]) for i, r in full if i not in bad_quantity)


def test_descriptions_with_commas_round_trip(written: dict[str, tuple[DemoData, bytes]]) -> None:
    _, data = written["uci"]
    assert b'"SET OF 3 CAKE TINS, PANTRY DESIGN"' in data
    rows = _rows(data, "utf-8")
    assert any(r[2] == "SET OF 3 CAKE TINS, PANTRY DESIGN" for r in rows[1:] if len(r) >= 8)


def test_frame_types(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS
    assert pd.api.types.is_integer_dtype(frame["Quantity"])
    assert pd.api.types.is_datetime64_any_dtype(frame["InvoiceDate"])
    assert pd.api.types.is_float_dtype(frame["UnitPrice"])
    for column in ("InvoiceNo", "StockCode", "Description", "Country"):
        assert all(isinstance(v, str) and v for v in frame[column])
    assert all(v is None or isinstance(v, str) for v in frame["CustomerID"])
    # never more than two decimals
    assert all(len(repr(p).split(".")[1]) <= 2 for p in frame["UnitPrice"])
    assert (frame["InvoiceDate"].dt.second == 0).all()
    assert frame["InvoiceDate"].min() >= pd.Timestamp("2010-12-01 08:00")
    assert frame["InvoiceDate"].max() <= pd.Timestamp("2011-12-09 20:00")
    minutes = frame["InvoiceDate"].dt.hour * 60 + frame["InvoiceDate"].dt.minute
    assert minutes.between(8 * 60, 20 * 60).all()


def test_invoices_number_in_time_order(frame: pd.DataFrame) -> None:
    invoices = frame.drop_duplicates("InvoiceNo")
    assert invoices["InvoiceNo"].iloc[0] == "536365"
    assert invoices["InvoiceNo"].str.fullmatch(r"C?\d{6}").all()
    numbers = invoices["InvoiceNo"].str.lstrip("C").astype(int)
    assert numbers.is_unique
    ordered = invoices.assign(number=numbers).sort_values("number")
    assert ordered["InvoiceDate"].is_monotonic_increasing


def test_customers_and_guests(frame: pd.DataFrame) -> None:
    ids = frame["CustomerID"].dropna()
    assert ids.str.fullmatch(r"\d{5}").all()
    assert "16446" not in set(ids)
    assert ids.nunique() == 1000
    invoices = frame.drop_duplicates("InvoiceNo")
    guest_share = invoices["CustomerID"].isna().mean()
    assert 0.05 <= guest_share <= 0.15
    # one country per customer, mostly the UK
    per_customer = frame.dropna(subset=["CustomerID"]).groupby("CustomerID")["Country"]
    assert (per_customer.nunique() == 1).all()
    uk_share = (per_customer.first() == "United Kingdom").mean()
    assert 0.78 <= uk_share <= 0.92
    countries = set(frame["Country"])
    assert {"Unspecified", "European Community", "Germany", "EIRE"} <= countries


def test_best_customers_exist(frame: pd.DataFrame) -> None:
    per_customer = (
        frame.dropna(subset=["CustomerID"])
        .groupby("CustomerID")["InvoiceNo"]
        .nunique()
        .sort_values(ascending=False)
    )
    top = per_customer.head(len(per_customer) // 20)
    assert (top >= 15).all()
    assert (per_customer == 1).mean() >= 0.2  # and many one-time buyers


def test_cancellations_reverse_earlier_lines(frame: pd.DataFrame) -> None:
    cancelled = frame[frame["InvoiceNo"].str.startswith("C")]
    assert not cancelled.empty
    assert (cancelled["Quantity"] < 0).all()
    assert (frame.loc[~frame["InvoiceNo"].str.startswith("C"), "Quantity"] > 0).all()
    share = cancelled["InvoiceNo"].nunique() / frame["InvoiceNo"].nunique()
    assert 0.01 <= share <= 0.04
    assert cancelled["CustomerID"].notna().all()
    bought = frame[~frame["InvoiceNo"].str.startswith("C")]
    reversals = cancelled[cancelled["StockCode"] != "D"]
    matched = reversals.merge(bought, on=["CustomerID", "StockCode"], suffixes=("", "_orig"))
    matched = matched[matched["InvoiceDate_orig"] < matched["InvoiceDate"]]
    keys = ["InvoiceNo", "StockCode"]
    assert len(matched.drop_duplicates(keys)) == len(reversals.drop_duplicates(keys))


def test_special_stock_codes(frame: pd.DataFrame) -> None:
    codes = set(frame["StockCode"])
    assert {"POST", "M", "D", "AMAZONFEE", "DOT"} <= codes
    post = frame[frame["StockCode"] == "POST"]
    assert set(post["UnitPrice"]) <= {18.0, 40.0}
    assert (post["Country"] != "United Kingdom").mean() > 0.5
    discount = frame[frame["StockCode"] == "D"]
    assert discount["InvoiceNo"].str.startswith("C").all()
    assert (discount["Quantity"] < 0).all()
    amazon = frame[frame["StockCode"] == "AMAZONFEE"]
    assert amazon["CustomerID"].isna().all()
    assert (amazon["UnitPrice"] > 100).all()
    assert frame.loc[frame["StockCode"] == "DOT", "CustomerID"].isna().all()


def test_catalogue(frame: pd.DataFrame) -> None:
    special = {"POST", "M", "D", "AMAZONFEE", "DOT"}
    products = frame[~frame["StockCode"].isin(special)]
    assert 200 <= products["StockCode"].nunique() <= 320
    assert products["StockCode"].str.fullmatch(r"\d{5}[A-Z]?").all()
    assert (products["Description"] == products["Description"].str.upper()).all()
    cheap = products[products["UnitPrice"] < 0.04]
    assert len(cheap) >= 3
    regular = products[products["UnitPrice"] >= 0.04]
    assert regular["UnitPrice"].between(0.29, 15.0).all()
    quantities = products["Quantity"].abs()
    assert quantities.isin([48, 96, 144]).any()
    assert (quantities <= 24).mean() > 0.9
    assert products["Description"].str.contains(",").any()


def test_small_and_invalid_arguments(tmp_path: Path) -> None:
    small = write_demo_data(tmp_path, customers=5, seed=1, layout="daily")
    assert small.customers == 5
    assert small.bad_lines == 5
    with pytest.raises(ValueError, match="layout"):
        write_demo_data(tmp_path, layout="excel")
    with pytest.raises(ValueError, match="customers"):
        generate_transactions(customers=0)
