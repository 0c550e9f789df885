"""Deterministic synthetic Online Retail transactions, for demos and tests.

The real UCI data cannot be shipped with the project, yet the pipeline must be
runnable end to end on a fresh checkout and its tests need data with the same
quirks as the real thing. This module fabricates invoice lines that look like the
real export: cancellations (``C`` invoices with negative quantities), guests
without a ``CustomerID``, postage/manual/discount/fee stock codes, free items,
descriptions with commas and pound signs, and customers of distinct purchasing
archetypes so that segmentation has structure to find. It is NOT real data.

Everything is drawn from one ``numpy.random.default_rng(seed)`` and iterated in
fixed orders (lists, sorted keys; never set or dict order, never the clock), so
the same ``(customers, seed, layout)`` always writes a byte-identical file.

:func:`write_demo_data` writes one of the three layouts that
:mod:`models_py.ingest` reads and adds five deliberately bad lines, so that the
quarantine path is exercised on every demo run, and lists the file's SHA-256 in the
folder's synthetic-data manifest (``models_py.ingest.SYNTHETIC_MARKER``), by which the
loader marks its rows as synthetic and removes them once real data is loaded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models_py.ingest import COLUMNS, mark_synthetic

# Layout -> (file name, text encoding, trailing empty column?).
LAYOUTS: dict[str, tuple[str, str, bool]] = {
    "kaggle": ("Ecommerce.csv", "cp1252", True),
    "uci": ("Online Retail.csv", "utf-8", False),
    "daily": ("transactions.csv", "utf-8", False),
}

# An unparseable InvoiceDate per layout, for the deliberately bad line.
_BAD_DATES: dict[str, str] = {
    "kaggle": "31-Foo-11",
    "uci": "13/45/2011 8:00",
    "daily": "2011-13-45 08:00:00",
}

# Where in the body the bad lines go, as fractions of the good lines: spread out,
# never first or last, so a reader cannot get away with checking only the ends.
_BAD_LINE_FRACTIONS: tuple[float, ...] = (0.12, 0.31, 0.5, 0.69, 0.88)

FIRST_DAY = np.datetime64("2010-12-01", "D")
LAST_DAY = np.datetime64("2011-12-09", "D")
FIRST_INVOICE = 536365
FIRST_CUSTOMER_ID = 12346
EXCLUDED_CUSTOMER_ID = 16446  # the real data's outlier; callers exclude it by rule
MAX_CUSTOMERS = 80_000  # keeps every CustomerID five digits long
OPEN_MINUTE = 8 * 60
CLOSE_MINUTE = 20 * 60

# strftime's %b follows the locale; the files must not.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

UK = "United Kingdom"
_FOREIGN: tuple[str, ...] = (
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
    "Portugal",
    "Australia",
    "Norway",
)
_FOREIGN_WEIGHTS = np.array([0.22, 0.2, 0.17, 0.07, 0.07, 0.06, 0.06, 0.05, 0.05, 0.05])
_FAR_AWAY = ("Australia", "Norway", "Switzerland")  # the 40.00 postage band
_ODD_COUNTRIES = ("Unspecified", "European Community")

# Archetype -> (share of customers, invoices lo..hi, basket lines lo..hi, bulk chance).
# Baskets and invoice counts are skewed towards the low end, as in the real data.
_ARCHETYPES: tuple[tuple[str, float, tuple[int, int], tuple[int, int], float], ...] = (
    ("best", 0.05, (15, 60), (4, 32), 0.08),
    ("regular", 0.25, (4, 15), (2, 20), 0.02),
    ("occasional", 0.40, (2, 4), (1, 15), 0.01),
    ("one_time", 0.30, (1, 1), (1, 12), 0.01),
)
_GUEST_BASKET = (1, 36)
_GUEST_SHARE = 0.10  # of all non-cancellation invoices
_CANCEL_SHARE = 0.02  # of customer invoices
_DISCOUNT_SHARE = 0.003
_MANUAL_SHARE = 0.005
_FREE_LINE_SHARE = 0.001

_QUANTITIES = np.array([1, 2, 3, 4, 6, 8, 10, 12, 24])
_QTY_WEIGHTS_NORMAL = np.array([0.2, 0.14, 0.1, 0.1, 0.14, 0.06, 0.06, 0.14, 0.06])
_QTY_WEIGHTS_BEST = np.array([0.05, 0.06, 0.06, 0.1, 0.16, 0.08, 0.1, 0.24, 0.15])
_BULK_QUANTITIES = np.array([48, 96, 144])

# Price points of the catalogue, in pence (0.29 .. 15.00).
_PRICE_POINTS = np.array(
    [29, 39, 42, 55, 65, 72, 79, 85, 95, 125, 145, 165, 185, 195, 210, 225, 250, 255, 295, 325,
     375, 395, 425, 495, 595, 675, 795, 850, 995, 1275, 1495, 1500]
)  # fmt: skip
_PRICE_WEIGHTS = np.array(
    [3, 3, 4, 4, 5, 3, 4, 6, 3, 6, 6, 8, 5, 4, 6, 3,
     7, 5, 8, 3, 4, 3, 5, 4, 3, 2, 2, 2, 2, 1, 1, 1],
    dtype=float,
)  # fmt: skip

# Real-looking products that must exist, including the awkward ones: commas force
# CSV quoting, the pound sign forces a non-ASCII byte (0xA3 in Windows-1252).
_FEATURED: tuple[tuple[str, str, int], ...] = (
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 255),
    ("71053", "WHITE METAL LANTERN", 339),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER", 275),
    ("84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", 339),
    ("22423", "REGENCY CAKESTAND 3 TIER", 1275),
    ("85099B", "JUMBO BAG RED RETROSPOT", 195),
    ("47566", "PARTY BUNTING", 495),
    ("84879", "ASSORTED COLOUR BIRD ORNAMENT", 169),
    ("21212", "PACK OF 72 RETROSPOT CAKE CASES", 55),
    ("22720", "SET OF 3 CAKE TINS, PANTRY DESIGN", 495),
    ("22138", "BAKING SET, 9 PIECE RETROSPOT", 495),
    ("21755", "LOVE BUILDING BLOCK WORD, SMALL", 595),
    ("22114", "HOT WATER BOTTLE, TEA AND SYMPATHY", 395),
    ("22077", "6 RIBBONS RUSTIC CHARM, ASSORTED", 165),
    ("22415", "GIFT VOUCHER £10", 1000),
    ("22416", "GIFT VOUCHER £5", 500),
    ("21181", "PLEASE ONE PERSON METAL SIGN, £1 A GO", 210),
    ("21175", "GIN AND TONIC DIET METAL SIGN £2", 250),
)
_CATALOGUE_SIZE = 300

_THEMES = (
    "RETROSPOT", "REGENCY", "WOODLAND", "SPACEBOY", "DOLLY GIRL", "VINTAGE", "PAISLEY",
    "POLKADOT", "HEART", "BIRD", "OWL", "SKULL", "CHRISTMAS", "FAIRY CAKE", "ROSES",
    "JAM MAKING", "PANTRY", "SPOTTY", "UNION JACK", "BAROQUE", "ALPHABET", "CIRCUS PARADE",
)  # fmt: skip
_COLOURS = (
    "RED", "PINK", "BLUE", "GREEN", "IVORY", "WHITE", "BLACK", "CREAM", "LILAC", "ORANGE",
)  # fmt: skip
_ITEMS = (
    "MUG", "LUNCH BOX", "JUMBO BAG", "T-LIGHT HOLDER", "DOORSTOP", "CANDLE", "NAPKINS",
    "PAPER CHAIN KIT", "BUNTING", "TEA TOWEL", "CHILDRENS APRON", "PHOTO FRAME",
    "CUSHION COVER", "HOT WATER BOTTLE", "PLASTERS IN TIN", "WALL CLOCK", "ALARM CLOCK",
    "NOTEBOOK", "GIFT WRAP", "WATER BOTTLE", "CAKE CASES", "LUNCH BAG", "SHOPPER BAG",
    "STORAGE TIN", "TRINKET BOX", "PARASOL", "BEAKER", "PAPER PLATES", "CHARLOTTE BAG",
    "HANGING ORNAMENT",
)  # fmt: skip


@dataclass(frozen=True)
class DemoData:
    """What :func:`write_demo_data` wrote, so callers can report it without re-reading."""

    path: Path  # the file written
    lines: int  # data lines written (without header), bad lines included
    customers: int  # distinct CustomerIDs present in the file
    bad_lines: int  # how many deliberately bad lines were written


@dataclass
class _Invoice:
    """One invoice while it is being built; numbered only once all are sorted by time."""

    customer: str | None
    country: str
    day: int  # index into the open days
    minute: int  # minute of the day
    cancel: bool
    lines: list[tuple[str, str, int, int]]  # stock code, description, quantity, pence


def _open_days() -> tuple[np.ndarray, np.ndarray]:
    """Trading days and their relative busyness.

    Like the real shop: closed on Saturdays and over Christmas, busiest in the
    run-up to Christmas 2011, so recency and seasonality look plausible.
    """
    days = np.arange(FIRST_DAY, LAST_DAY + 1, dtype="datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday == 0
    christmas = (days >= np.datetime64("2010-12-24")) & (days <= np.datetime64("2011-01-03"))
    days = days[(weekday != 5) & ~christmas]
    offset = (days - np.datetime64("2011-11-15")).astype(np.int64)
    weights = 1.0 + 1.5 * np.exp(-((offset / 45.0) ** 2))
    return days, weights / weights.sum()


def _catalogue(rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """About 300 products: stock codes, descriptions, prices in pence, popularity."""
    codes = [c for c, _, _ in _FEATURED]
    descriptions = [d for _, d, _ in _FEATURED]
    prices = [p for _, _, p in _FEATURED]
    taken_numbers = {int(c.rstrip("ABCDEFG")) for c in codes}
    seen = set(descriptions)
    numbers = [n for n in range(20600, 24000) if n not in taken_numbers]
    numbers += [n for n in range(84000, 86000) if n not in taken_numbers]
    chosen = rng.choice(np.array(numbers), size=_CATALOGUE_SIZE, replace=False)
    for number in chosen.tolist():
        if len(codes) >= _CATALOGUE_SIZE:
            break
        shape = rng.integers(0, 3)
        item = _ITEMS[rng.integers(0, len(_ITEMS))]
        theme = _THEMES[rng.integers(0, len(_THEMES))]
        colour = _COLOURS[rng.integers(0, len(_COLOURS))]
        if shape == 0:
            description = f"{theme} {item}"
        elif shape == 1:
            description = f"{colour} {theme} {item}"
        else:
            description = f"SET OF {int(rng.choice([3, 4, 6, 12]))} {colour} {item}S"
        if description in seen:
            continue
        seen.add(description)
        suffix = "ABCDE"[rng.integers(0, 5)] if rng.random() < 0.15 else ""
        codes.append(f"{number}{suffix}")
        descriptions.append(description)
        prices.append(int(rng.choice(_PRICE_POINTS, p=_PRICE_WEIGHTS / _PRICE_WEIGHTS.sum())))
    popularity = rng.lognormal(0.0, 0.8, size=len(codes))
    # The featured products (commas, pound signs) must actually turn up in baskets.
    floor = np.quantile(popularity, 0.8)
    popularity[: len(_FEATURED)] = np.maximum(popularity[: len(_FEATURED)], floor)
    return codes, descriptions, np.array(prices), popularity / popularity.sum()


def _sample_days(
    rng: np.random.Generator, cumulative: np.ndarray, lo: int, hi: int, size: int
) -> np.ndarray:
    """``size`` open-day indices in ``[lo, hi]``, following the busyness weights."""
    start = cumulative[lo - 1] if lo > 0 else 0.0
    u = rng.uniform(start, cumulative[hi], size=size)
    return np.minimum(np.searchsorted(cumulative, u, side="right"), hi).clip(lo)


def _minutes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Shop-hour minutes, busiest around lunch time, as in the real data."""
    raw = rng.normal(12.5 * 60, 130.0, size=size).round().astype(np.int64)
    return raw.clip(OPEN_MINUTE, CLOSE_MINUTE - 1)


def _skewed(rng: np.random.Generator, lo: int, hi: int, power: float = 2.0) -> int:
    """An integer in ``[lo, hi]`` favouring small values (few big baskets, many small)."""
    return lo + int((hi - lo + 1) * rng.random() ** power)


def _later(rng: np.random.Generator, day: int, minute: int, last_day: int) -> tuple[int, int]:
    """A moment strictly after ``(day, minute)``: when a cancellation or credit happens."""
    new_day = min(day + (0 if rng.random() < 0.5 else int(rng.integers(1, 15))), last_day)
    if new_day == day:
        if minute >= CLOSE_MINUTE - 1:
            new_day = min(day + 1, last_day)
        else:
            return day, int(rng.integers(minute + 1, CLOSE_MINUTE))
    return new_day, int(_minutes(rng, 1)[0])


def _build(customers: int, seed: int) -> pd.DataFrame:
    """The whole generator; :func:`generate_transactions` only validates and returns it."""
    rng = np.random.default_rng(seed)
    days, day_weights = _open_days()
    n_days = len(days)
    last = n_days - 1
    cumulative = np.cumsum(day_weights)
    cumulative[-1] = 1.0
    codes, descriptions, prices, popularity = _catalogue(rng)
    n_products = len(codes)
    post_code = ("POST", "POSTAGE")

    # Customers: five-digit ids (never the outlier), shuffled, each with one archetype
    # and one country.
    pool = [
        i
        for i in range(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + customers + 1)
        if i != EXCLUDED_CUSTOMER_ID
    ][:customers]
    ids = [str(i) for i in rng.permutation(np.array(pool)).tolist()]
    archetypes: list[int] = []
    for index, (_, share, _, _, _) in enumerate(_ARCHETYPES[:-1]):
        archetypes += [index] * round(share * customers)
    archetypes = archetypes[:customers]
    archetypes += [len(_ARCHETYPES) - 1] * (customers - len(archetypes))
    foreign = rng.random(customers) >= 0.85
    foreign_pick = rng.choice(len(_FOREIGN), size=customers, p=_FOREIGN_WEIGHTS)
    countries = [
        _FOREIGN[f] if is_foreign else UK
        for is_foreign, f in zip(foreign.tolist(), foreign_pick.tolist(), strict=True)
    ]
    # A handful of lines from the odd "countries" of the real data: one small customer each.
    small = [i for i, a in enumerate(archetypes) if _ARCHETYPES[a][0] in ("occasional", "one_time")]
    if len(small) >= 2 * len(_ODD_COUNTRIES):
        for odd, index in zip(
            _ODD_COUNTRIES,
            rng.choice(small, size=len(_ODD_COUNTRIES), replace=False).tolist(),
            strict=True,
        ):
            countries[index] = odd

    invoices: list[_Invoice] = []
    product_lines: list[tuple[int, int]] = []  # (invoice index, line index) of catalogue lines
    qty_normal = _QTY_WEIGHTS_NORMAL / _QTY_WEIGHTS_NORMAL.sum()
    qty_best = _QTY_WEIGHTS_BEST / _QTY_WEIGHTS_BEST.sum()

    def basket(size: int, best: bool, bulk_chance: float) -> list[tuple[str, str, int, int]]:
        size = min(size, n_products)
        picks = rng.choice(n_products, size=size, replace=False, p=popularity)
        quantities = rng.choice(_QUANTITIES, size=size, p=qty_best if best else qty_normal)
        bulk = rng.random(size) < bulk_chance
        quantities = np.where(bulk, rng.choice(_BULK_QUANTITIES, size=size), quantities)
        return [
            (codes[p], descriptions[p], q, int(prices[p]))
            for p, q in zip(picks.tolist(), quantities.tolist(), strict=True)
        ]

    def add(invoice: _Invoice, catalogue_lines: int) -> None:
        index = len(invoices)
        invoices.append(invoice)
        product_lines.extend((index, j) for j in range(catalogue_lines))

    # Each customer is active over a window of the year: loyal ones all year, others
    # start late or lapse early, so recency differs between customers.
    for customer, archetype, country in zip(ids, archetypes, countries, strict=True):
        name, _, (inv_lo, inv_hi), (bas_lo, bas_hi), bulk_chance = _ARCHETYPES[archetype]
        best = name == "best"
        count = _skewed(rng, inv_lo, inv_hi)
        if best:
            lo = int(rng.integers(0, n_days // 6))
            hi = last - int(rng.integers(0, n_days // 20))
        elif name == "regular":
            lo = int(rng.integers(0, n_days // 2))
            hi = min(last, lo + int(rng.integers(n_days // 3, n_days)))
        elif name == "occasional":
            lo = int(rng.integers(0, n_days - 10))
            hi = min(last, lo + int(rng.integers(10, (n_days * 3) // 5)))
        else:
            lo = hi = int(rng.integers(0, n_days))
        when = np.sort(_sample_days(rng, cumulative, lo, hi, count))
        minutes = _minutes(rng, count)
        for day, minute in zip(when.tolist(), minutes.tolist(), strict=True):
            lines = basket(_skewed(rng, bas_lo, bas_hi, 2.2), best, bulk_chance)
            catalogue_lines = len(lines)
            # Postage: nearly every foreign order pays it, UK orders hardly ever.
            if rng.random() < (0.005 if country == UK else 0.7):
                price = 4000 if country in _FAR_AWAY else 1800
                lines.append((*post_code, int(rng.integers(1, 4)), price))
            if rng.random() < _MANUAL_SHARE:
                lines.append(("M", "Manual", 1, int(rng.integers(50, 6000))))
            add(_Invoice(customer, country, day, minute, False, lines), catalogue_lines)

    customer_invoices = len(invoices)
    guests = round(customer_invoices * _GUEST_SHARE / (1 - _GUEST_SHARE))
    guest_days = _sample_days(rng, cumulative, 0, last, guests)
    guest_minutes = _minutes(rng, guests)
    for day, minute in zip(guest_days.tolist(), guest_minutes.tolist(), strict=True):
        roll = rng.random()
        foreign_country = _FOREIGN[int(rng.choice(len(_FOREIGN), p=_FOREIGN_WEIGHTS))]
        country = UK if roll < 0.92 else ("Unspecified" if roll < 0.93 else foreign_country)
        lines = basket(_skewed(rng, *_GUEST_BASKET, 2.2), False, 0.01)
        catalogue_lines = len(lines)
        if rng.random() < 0.5:
            lines.append(("DOT", "DOTCOM POSTAGE", 1, int(rng.integers(1000, 30000))))
        add(_Invoice(None, country, day, minute, False, lines), catalogue_lines)
    for _ in range(max(1, round(len(invoices) / 3000))):
        day = int(_sample_days(rng, cumulative, 0, last, 1)[0])
        fee = ("AMAZONFEE", "AMAZON FEE", 1, int(rng.integers(100_000, 1_500_000)))
        add(_Invoice(None, UK, day, int(_minutes(rng, 1)[0]), False, [fee]), 0)

    # A few catalogue lines given away (price 0.00) or nearly (0.01, 0.03).
    free = max(3, round(len(product_lines) * _FREE_LINE_SHARE))
    for k in rng.choice(len(product_lines), size=free, replace=False).tolist():
        i, j = product_lines[k]
        code, description, quantity, _ = invoices[i].lines[j]
        invoices[i].lines[j] = (code, description, quantity, int(rng.choice([0, 1, 3])))

    # Cancellations reverse part of an earlier invoice of the same customer; credits
    # ("D" Discount) are cancellation invoices of their own.
    eligible = [i for i in range(customer_invoices) if invoices[i].day < last]
    n_cancel = min(len(eligible), max(1, round(customer_invoices * _CANCEL_SHARE)))
    n_discount = min(len(eligible), max(1, round(customer_invoices * _DISCOUNT_SHARE)))
    for i in sorted(rng.choice(eligible, size=n_cancel, replace=False).tolist()):
        original = invoices[i]
        k = int(rng.integers(1, min(len(original.lines), 5) + 1))
        reversed_lines = []
        for j in sorted(rng.choice(len(original.lines), size=k, replace=False).tolist()):
            code, description, quantity, price = original.lines[j]
            if quantity > 1 and rng.random() < 0.4:
                quantity = int(rng.integers(1, quantity))
            reversed_lines.append((code, description, -quantity, price))
        day, minute = _later(rng, original.day, original.minute, last)
        invoices.append(
            _Invoice(original.customer, original.country, day, minute, True, reversed_lines)
        )
    for i in sorted(rng.choice(eligible, size=n_discount, replace=False).tolist()):
        original = invoices[i]
        day, minute = _later(rng, original.day, original.minute, last)
        credit = [("D", "Discount", -1, int(rng.integers(500, 5000)))]
        invoices.append(_Invoice(original.customer, original.country, day, minute, True, credit))

    # Number the invoices in time order; ties keep creation order.
    order = sorted(range(len(invoices)), key=lambda i: (invoices[i].day, invoices[i].minute, i))
    steps = rng.integers(1, 3, size=len(order))
    steps[0] = 0
    numbers = (FIRST_INVOICE + np.cumsum(steps)).tolist()

    columns: dict[str, list] = {name: [] for name in COLUMNS}
    stamps: list[np.datetime64] = []
    for number, i in zip(numbers, order, strict=True):
        invoice = invoices[i]
        invoice_no = f"C{number}" if invoice.cancel else str(number)
        stamp = days[invoice.day] + np.timedelta64(invoice.minute, "m")
        for code, description, quantity, price in invoice.lines:
            columns["InvoiceNo"].append(invoice_no)
            columns["StockCode"].append(code)
            columns["Description"].append(description)
            columns["Quantity"].append(quantity)
            stamps.append(stamp)
            columns["UnitPrice"].append(price)
            columns["CustomerID"].append(invoice.customer)
            columns["Country"].append(invoice.country)
    frame = pd.DataFrame(
        {
            "InvoiceNo": pd.Series(columns["InvoiceNo"], dtype=object),
            "StockCode": pd.Series(columns["StockCode"], dtype=object),
            "Description": pd.Series(columns["Description"], dtype=object),
            "Quantity": np.array(columns["Quantity"], dtype=np.int64),
            "InvoiceDate": np.array(stamps, dtype="datetime64[m]").astype("datetime64[ns]"),
            # pence / 100 is the double nearest the two-decimal price: never a third decimal
            "UnitPrice": np.array(columns["UnitPrice"], dtype=np.int64) / 100.0,
            "CustomerID": pd.Series(columns["CustomerID"], dtype=object),
            "Country": pd.Series(columns["Country"], dtype=object),
        }
    )
    return frame


def generate_transactions(customers: int = 1000, seed: int = 42) -> pd.DataFrame:
    """Clean, typed synthetic invoice lines, in invoice (= time) order.

    Columns as in the real export: InvoiceNo, StockCode, Description (str),
    Quantity (int64), InvoiceDate (datetime64), UnitPrice (float, at most two
    decimals), CustomerID (five-digit str, None for guests) and Country (str).
    The text columns are plain ``object`` columns so that guests really are
    ``None`` rather than a dtype-specific missing marker.
    """
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 1 and {MAX_CUSTOMERS}, got {customers}")
    return _build(customers, seed)


def _format_dates(stamps: pd.Series, layout: str) -> list[str]:
    """InvoiceDate as each layout writes it; English month names whatever the locale."""
    parts = zip(
        stamps.dt.year.tolist(),
        stamps.dt.month.tolist(),
        stamps.dt.day.tolist(),
        stamps.dt.hour.tolist(),
        stamps.dt.minute.tolist(),
        strict=True,
    )
    if layout == "kaggle":
        return [f"{d:02d}-{_MONTHS[m - 1]}-{y % 100:02d}" for y, m, d, _, _ in parts]
    if layout == "uci":
        return [f"{m}/{d}/{y} {h}:{mi:02d}" for y, m, d, h, mi in parts]
    return [f"{y:04d}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:00" for y, m, d, h, mi in parts]


def _bad_lines(rows: list[list[str]], layout: str) -> list[tuple[int, list[str]]]:
    """Five broken copies of body rows, each with the row index it follows.

    One defect each, the kinds a loader must quarantine rather than load or crash
    on: unparseable date, non-numeric quantity, missing invoice, missing stock
    code, and a truncated record of only four fields.
    """
    positions = [int(len(rows) * f) for f in _BAD_LINE_FRACTIONS]
    date_col = COLUMNS.index("InvoiceDate")
    defects: list[tuple[int, str]] = [
        (date_col, _BAD_DATES[layout]),
        (COLUMNS.index("Quantity"), "abc"),
        (COLUMNS.index("InvoiceNo"), ""),
        (COLUMNS.index("StockCode"), ""),
    ]
    bad: list[tuple[int, list[str]]] = []
    for position, (column, value) in zip(positions, defects, strict=False):
        row = list(rows[position])
        row[column] = value
        bad.append((position, row))
    truncated = rows[positions[-1]]
    short = [truncated[0], truncated[1], truncated[2].replace(",", ""), truncated[3]]
    bad.append((positions[-1], short))
    return bad


def write_demo_data(
    directory: Path | str, customers: int = 1000, seed: int = 42, layout: str = "kaggle"
) -> DemoData:
    """Write one synthetic transaction file in ``layout`` into ``directory``.

    The file gets exactly five deliberately bad lines (see :func:`_bad_lines`) in
    its body, so a demo run always shows the quarantine at work. Same arguments,
    same bytes. The file is listed in ``directory``'s synthetic-data manifest, so the
    loader knows it is not real wherever the warehouse is.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    file_name, encoding, trailing = LAYOUTS[layout]
    frame = generate_transactions(customers=customers, seed=seed)

    customer_ids = [
        "" if c is None else (f"{c}.0" if layout == "daily" else c)
        for c in frame["CustomerID"].tolist()
    ]
    rows = [
        list(values)
        for values in zip(
            frame["InvoiceNo"].tolist(),
            frame["StockCode"].tolist(),
            frame["Description"].tolist(),
            [str(q) for q in frame["Quantity"].tolist()],
            _format_dates(frame["InvoiceDate"], layout),
            [f"{p:.2f}" for p in frame["UnitPrice"].tolist()],
            customer_ids,
            frame["Country"].tolist(),
            strict=True,
        )
    ]
    bad = _bad_lines(rows, layout)
    after: dict[int, list[list[str]]] = {}
    for position, row in bad:
        after.setdefault(position, []).append(row)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    extra = [""] if trailing else []
    seen: set[str] = set()
    written = 0
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*COLUMNS, *extra])
        for index, row in enumerate(rows):
            for out in [row, *after.get(index, [])]:
                # The truncated record stays truncated: no trailing column either.
                writer.writerow(out + extra if len(out) == len(COLUMNS) else out)
                written += 1
                if len(out) == len(COLUMNS) and out[6]:
                    seen.add(out[6])
    mark_synthetic(path)
    return DemoData(path=path, lines=written, customers=len(seen), bad_lines=len(bad))
