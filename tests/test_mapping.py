"""The mapping file (issue 14): validated with one-line, line-numbered errors, and a
wrong or incomplete mapping fails in one clear line and loads nothing.

Four layers, each on real files: ``read_mapping`` on YAML files written here; the real
CLI (``insiders load --mapping``, ``$INSIDERS_MAPPING``); the Dagster asset
``raw_transactions`` with op config ``{source, mapping}``; and a custom mapping loaded
end to end into a real DuckDB warehouse, every expected value worked out from the rows
this module writes, never read back from the loader's output.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jsonschema
import pytest
import yaml
from dagster import DagsterInstance, materialize

from models_py.mapping import PRESET_DIR, PRESETS, SCHEMA, MappingError, preset, read_mapping
from orchestration.cli import main
from orchestration.warehouse import load_files
from tests.conftest import query, scalar

# --- a valid custom mapping and the file it reads ----------------------------------------

HEADER = [
    "Order Ref",
    "Item Code",
    "Item Title",
    "Units",
    "Placed At",
    "Line Amount",
    "Buyer",
    "Nation",
    "State",
    "Curr",
]
DATE_FORMAT = "%d/%m/%Y %H:%M"

MAPPING = """\
# A store's own export, mapped once.
name: my-shop
columns:
  order_id: Order Ref
  product_id: Item Code
  description: Item Title
  quantity: Units
  line_total: Line Amount
  ordered_at: Placed At
  customer_id: Buyer
  country: Nation
ordered_at:
  format: "%d/%m/%Y %H:%M"
  timezone: Europe/Paris
currency:
  column: Curr
  expected: EUR
returns:
  cancelled_prefix: "C"
  status:
    column: State
    values: [returned]
exclude:
  column: State
  values: [void]
"""

UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
RECORDS = f"""\
A100,SKU1,Mug,2,31/12/2023 14:05,10.00,ann@example.com,France,paid,EUR
A100,SKU2,Plate,3,31/12/2023 14:05,10.00,ann@example.com,France,paid,EUR
A101,SKU1,Mug,1,01/01/2024 09:30,5.5,ANN@Example.COM,France,paid,eur
C102,SKU1,Mug,1,02/01/2024 10:00,5.5, Ann@example.com ,France,paid,EUR
A103,SKU3,Bowl,2,03/01/2024 11:15,7.00,{UUID},Spain,Returned,EUR
A104,SKU3,Bowl,1,03/01/2024 11:20,3.50,bob@example.org,Spain,void,EUR
A105,SKU2,Plate,1,03/01/2024 12:00,3.10,bob@example.org,Spain,paid,USD
A106,SKU2,Plate,1,2023-12-31 08:00,3.10,bob@example.org,Spain,paid,EUR
A107,SKU1,Mug,two,04/01/2024 08:00,5.00,bob@example.org,Spain,paid,EUR
A108,SKU1,Mug,0,04/01/2024 08:05,4.0,bob@example.org,Spain,paid,EUR
A109,SKU4,Candle,4,05/01/2024 16:45,10.00,12345,United Kingdom,paid,EUR
A110,SKU4,Candle,1,05/01/2024 16:50,2.50,,United Kingdom,paid,EUR
A111,,Candle,1,05/01/2024 17:00,2.50,bob@example.org,United Kingdom,paid,EUR
A112,SKU4,gift for dan@example.com,1,05/01/2024 17:05,abc,bob@example.org,Spain,paid,EUR
A113,carl@example.net,broken
"""
# What the loader must make of each record, by order: quarantined with this reason, in
# the file's own column names (any other record loads).
REASONS = {
    "A104": "State 'void': not a sale",
    "A105": "Curr 'USD', not EUR",
    "A106": "bad Placed At '2023-12-31 08:00' (expected %d/%m/%Y %H:%M)",
    "A107": "bad Units 'two'",
    "A108": "Units is 0: no unit price from Line Amount '4.0'",
    "A111": "missing Item Code",
    "A112": "bad Line Amount 'abc'",
    "A113": "expected 10 fields, found 3",
}
ROWS: list[tuple[list[str], str | None]] = [
    (line.split(","), REASONS.get(line.split(",")[0])) for line in RECORDS.splitlines()
]
EMAILS = ("ann@example.com", "bob@example.org", "carl@example.net", "dan@example.com")


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    """The rows as CSV text, as a store's export would hold them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def line_of(text: str, needle: str, last: bool = False) -> int:
    """The 1-based number of the (first or last) line of ``text`` holding ``needle``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert found, f"{needle!r} not in the text"
    return found[-1] if last else found[0]


def mapping_error(path: Path, text: str) -> str:
    """Write ``text`` to ``path``, read it as a mapping, return its one-line error."""
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        read_mapping(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def table_counts(warehouse: Path) -> tuple[int, int, int]:
    """(transactions, quarantined rows, loaded files) of a warehouse; zeros when the
    file was never created."""
    if not warehouse.exists():
        return (0, 0, 0)
    return query(
        warehouse,
        """
        select (select count(*) from raw.transactions),
               (select count(*) from raw.quarantined_rows),
               (select count(*) from raw.loaded_files)
        """,
    )[0]


# --- 1. the mapping file ------------------------------------------------------------------

BASE = """\
name: shop
columns:
  order_id: Order
  product_id: SKU
  quantity: Qty
  unit_price: Price
  ordered_at: When
ordered_at:
  format: "%Y-%m-%d %H:%M"
"""


def test_the_base_mapping_is_valid(tmp_path):
    """The base every error case below breaks in one place is itself fine."""
    path = tmp_path / "orders.yml"
    path.write_text(BASE)
    mapping = read_mapping(path)
    assert mapping.name == "shop"
    assert mapping.columns["quantity"] == ("Qty",)
    assert mapping.date_formats == ("%Y-%m-%d %H:%M",)


def test_an_unknown_top_level_key_names_its_line(tmp_path):
    text = BASE + "colour: red\n"
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'colour')}: colour: unknown key")


@pytest.mark.parametrize(
    ("text", "needle", "dotted"),
    [
        (BASE.replace("  quantity: Qty\n", "  qty: x\n"), "qty: x", "columns.qty"),
        (BASE + "currency: {column: Curr, expect: EUR}\n", "currency:", "currency.expect"),
        (
            BASE + "returns:\n  refund:\n    amount: R\n    perr: line\n",
            "perr",
            "returns.refund.perr",
        ),
    ],
    ids=["columns", "flow-style", "deep"],
)
def test_an_unknown_nested_key_names_its_path_and_line(tmp_path, text, needle, dotted):
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, needle)}: {dotted}: unknown key"), message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (BASE + "2024: x\ncolour: red\n", "2024"),
        (BASE.replace("  quantity: Qty\n", "  quantity: Qty\n  2: x\n  qty: y\n"), "2: x"),
    ],
    ids=["top-level", "columns"],
)
def test_unknown_keys_of_mixed_types_are_one_line(tmp_path, text, needle):
    """YAML reads ``2024:`` as a number: beside an unknown key that is a name, sorting
    the unknown keys once raised TypeError (a traceback from ``insiders load``)."""
    path = tmp_path / "orders.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as caught:  # not TypeError
        read_mapping(path)
    message = str(caught.value)
    assert "\n" not in message and "unknown key" in message
    assert message.startswith(f"{path}:{line_of(text, needle)}: ")


def test_a_missing_name_is_one_line(tmp_path):
    text = BASE.replace("name: shop\n", "description: our shop\n")
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == f"{path}:1: (top level): missing 'name'"


@pytest.mark.parametrize("field", ["order_id", "product_id", "quantity", "ordered_at"])
def test_a_missing_required_field_names_it_at_columns(tmp_path, field):
    text = "".join(line for line in BASE.splitlines(True) if not line.startswith(f"  {field}:"))
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'columns:')}: columns: missing {field} ")


@pytest.mark.parametrize(
    "text",
    [
        BASE.replace("  unit_price: Price\n", "  unit_price: Price\n  line_total: Total\n"),
        BASE.replace("  unit_price: Price\n", ""),
    ],
    ids=["both", "neither"],
)
def test_exactly_one_of_unit_price_and_line_total(tmp_path, text):
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == (
        f"{path}:{line_of(text, 'columns:')}: columns: map exactly one of unit_price and line_total"
    )


@pytest.mark.parametrize("column", ["Qty", "qty", " QTY"])
def test_two_fields_on_one_column_is_an_error(tmp_path, column):
    text = BASE.replace("  unit_price: Price\n", f"  unit_price: '{column}'\n")
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'unit_price')}: columns.unit_price: ")
    assert "quantity and unit_price both map to the column" in message


def test_a_fallback_column_may_repeat_another_fields_column(tmp_path):
    """product_id [sku, name] with description name: a product without a SKU is
    known by its name; not two fields on one column."""
    text = BASE.replace("  product_id: SKU\n", "  product_id: [SKU, Name]\n  description: Name\n")
    path = tmp_path / "orders.yml"
    path.write_text(text)
    mapping = read_mapping(path)
    assert mapping.columns["product_id"] == ("SKU", "Name")
    assert mapping.columns["description"] == ("Name",)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            BASE.replace("  unit_price: Price\n", "  unit_price: Price\n  quantity: Units\n"),
            "quantity",
        ),
        (BASE + "name: other\n", "name"),
    ],
    ids=["nested", "top-level"],
)
def test_a_key_given_twice_names_the_second(tmp_path, text, key):
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    second = line_of(text, f"{key}:", last=True)
    assert message == f"{path}:{second}: {key!r} given twice"


def test_a_date_format_duckdb_rejects(tmp_path):
    text = BASE.replace('"%Y-%m-%d %H:%M"', '"%Y-%Q"')
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'format:')}: ordered_at.format: '%Y-%Q'")
    assert "not a date format DuckDB reads" in message


def test_a_format_without_a_directive(tmp_path):
    text = BASE.replace('"%Y-%m-%d %H:%M"', '"YYYY-MM-DD"')
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == (
        f"{path}:{line_of(text, 'format:')}: ordered_at.format: "
        "'YYYY-MM-DD' is not a strptime format (no % directive)"
    )


def test_a_format_list_with_one_entry_without_a_directive(tmp_path):
    """The second of two formats has no %: the message should say so of that entry,
    not that the list "is not of type 'string'" (the first branch of the schema's
    oneOf)."""
    text = BASE.replace('"%Y-%m-%d %H:%M"', '["%Y-%m-%d %H:%M", "YYYY-MM-DD"]')
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'format:')}: ordered_at.format")
    assert "'YYYY-MM-DD'" in message and "no % directive" in message, message


def test_an_unknown_time_zone(tmp_path):
    text = BASE + "  timezone: Mars/Olympus_Mons\n"
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == (
        f"{path}:{line_of(text, 'timezone')}: ordered_at.timezone: "
        "unknown time zone 'Mars/Olympus_Mons'"
    )


def test_formats_mixing_offsets_and_none(tmp_path):
    text = BASE.replace('"%Y-%m-%d %H:%M"', '["%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M"]')
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:{line_of(text, 'format:')}: ordered_at.format: ")
    assert "%z" in message


def test_a_refunded_quantity_needs_per_line(tmp_path):
    text = BASE + "returns:\n  refund:\n    amount: Refunded\n    quantity: Refunded Qty\n"
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == (
        f"{path}:{line_of(text, 'Refunded Qty')}: returns.refund.quantity: "
        "a refunded quantity needs per: line"
    )
    fixed = text.replace("    quantity:", "    per: line\n    quantity:")
    path.write_text(fixed)
    assert read_mapping(path).refund_quantity == "Refunded Qty"


def test_extends_an_unknown_preset(tmp_path):
    text = "name: shop\nextends: magento\n"
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:2: extends: no preset 'magento'")
    assert all(name in message for name in PRESETS)


@pytest.mark.parametrize(
    ("text", "bad_line"),
    [
        (BASE + "exclude:\n\tcolumn: State\n", "\tcolumn"),
        (BASE + "order_level: [Email, Currency\n", None),
        ("name: shop\ncolumns:\n  order_id: Order\n quantity: Qty\n", " quantity"),
    ],
    ids=["tab", "unclosed-list", "indentation"],
)
def test_invalid_yaml_names_the_line(tmp_path, text, bad_line):
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    # An unclosed list is noticed where the text ends (PyYAML's mark: past the last
    # line); its own line or that one.
    last = len(text.splitlines())
    lines = {line_of(text, bad_line)} if bad_line else {last, last + 1}
    found = re.fullmatch(rf"{re.escape(str(path))}:(\d+): not valid YAML \(.+\)", message)
    assert found and int(found.group(1)) in lines, message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file(tmp_path, text):
    path = tmp_path / "orders.yml"
    assert mapping_error(path, text) == f"{path}: empty mapping file"


def test_a_missing_file(tmp_path):
    path = tmp_path / "nowhere.yml"
    with pytest.raises(MappingError) as caught:
        read_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: no such mapping file")
    assert "\n" not in message and all(name in message for name in PRESETS)


@pytest.mark.parametrize("text", ["- name: shop\n- columns: {}\n", "just words\n", "42\n"])
def test_a_top_level_that_is_no_mapping(tmp_path, text):
    path = tmp_path / "orders.yml"
    message = mapping_error(path, text)
    assert message.startswith(f"{path}:1: a mapping is a YAML object")


def test_extends_shopify_with_a_time_zone(tmp_path):
    text = (
        "name: my-shop\n"
        "extends: shopify\n"
        "ordered_at:\n"
        "  format: '%Y-%m-%d %H:%M:%S %z'\n"
        "  timezone: Europe/Paris\n"
    )
    path = tmp_path / "orders.yml"
    path.write_text(text)
    mapping = read_mapping(path)
    shopify = yaml.safe_load((PRESET_DIR / "shopify.yml").read_text())
    assert mapping.name == "my-shop"
    assert mapping.timezone == "Europe/Paris"
    assert mapping.date_formats == ("%Y-%m-%d %H:%M:%S %z",)
    expected = {
        field: (value,) if isinstance(value, str) else tuple(value)
        for field, value in shopify["columns"].items()
    }
    assert mapping.columns == expected
    assert mapping.order_level == tuple(shopify["order_level"])
    assert mapping.refund_amount == shopify["returns"]["refund"]["amount"]
    assert mapping.currency_column == shopify["currency"]["column"]


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("ordered_at:\n  timezone: Europe/Paris\n", lambda m: m.timezone == "Europe/Paris"),
        ("currency:\n  expected: EUR\n", lambda m: m.currency_expected == "EUR"),
    ],
    ids=["timezone-only", "currency-only"],
)
def test_extends_overrides_one_setting_and_keeps_the_rest(tmp_path, override, check):
    """``extends`` "overrides what the file gives" (models_py/mapping.py): a store that
    only sets its time zone (or its currency) keeps the preset's date format (or
    currency column). Fails while the extending file is validated against the whole
    schema before it is merged (``ordered_at: missing 'format'``, ``currency: missing
    'column'``)."""
    text = "name: my-shop\nextends: shopify\n" + override
    path = tmp_path / "orders.yml"
    path.write_text(text)
    shopify = yaml.safe_load((PRESET_DIR / "shopify.yml").read_text())
    mapping = read_mapping(path)
    assert check(mapping)
    assert mapping.date_formats == (shopify["ordered_at"]["format"],)
    assert mapping.currency_column == shopify["currency"]["column"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_reads_and_validates(name):
    data = yaml.safe_load((PRESET_DIR / f"{name}.yml").read_text())
    jsonschema.validate(data, SCHEMA)
    by_name = read_mapping(name)
    by_file = read_mapping(PRESET_DIR / f"{name}.yml")
    assert by_name == preset(name)
    assert by_name.name == by_file.name == data["name"] == name
    assert by_name.columns == by_file.columns
    assert by_name.date_formats == by_file.date_formats
    assert {"order_id", "product_id", "quantity", "ordered_at"} <= set(by_name.columns)


def test_the_presets_are_the_ones_the_issue_names():
    assert set(PRESETS) == {"uci", "kaggle", "daily", "shopify", "woocommerce"}


# --- 2. through the CLI ---------------------------------------------------------------------


@pytest.fixture
def store_file(write_file) -> Path:
    """The custom export (every row of ROWS) and its mapping beside it."""
    return write_file("orders.csv", ",".join(HEADER) + "\n" + RECORDS)


@pytest.fixture
def good_mapping(tmp_path) -> Path:
    path = tmp_path / "maps" / "orders.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MAPPING)
    return path


def load(warehouse: Path, *args: str) -> int:
    return main(["load", "--warehouse", str(warehouse), *args])


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (BASE + "colour: red\n", ":10: colour: unknown key"),
        (BASE.replace("  unit_price: Price\n", "  unit_price: Qty\n"), ":6: columns.unit_price: "),
        (BASE.replace("  ordered_at: When\n", ""), ":2: columns: missing ordered_at "),
        ("- a\n- b\n", ":1: a mapping is a YAML object"),
        ("", ": empty mapping file"),
    ],
    ids=["unknown-key", "two-on-one", "missing-field", "list", "empty"],
)
def test_cli_a_bad_mapping_is_one_line_rc_2_and_loads_nothing(
    tmp_path, store_file, warehouse, capsys, text, problem
):
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    assert load(warehouse, "--mapping", str(bad), str(store_file)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"insiders: error: {bad}{problem}"), line
    assert table_counts(warehouse) == (0, 0, 0)


def test_cli_a_missing_mapping_file_loads_nothing_into_a_warehouse_with_data(
    tmp_path, store_file, good_mapping, warehouse, capsys
):
    assert load(warehouse, "--mapping", str(good_mapping), str(store_file)) == 0
    before = table_counts(warehouse)
    other = store_file.with_name("more.csv")
    other.write_text(csv_text(HEADER, [ROWS[0][0]]))
    missing = tmp_path / "typo.yml"
    capsys.readouterr()
    assert load(warehouse, "--mapping", str(missing), str(other)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"insiders: error: {missing}: no such mapping file")
    assert table_counts(warehouse) == before


@pytest.mark.parametrize(
    ("column", "what"),
    # State is both returns.status and exclude: either may be named.
    [("Units", "quantity"), ("Curr", "currency"), ("State", "(returns.status|exclude)")],
)
def test_cli_a_mapped_column_missing_from_the_header_fails_that_file_only(
    write_file, store_file, good_mapping, warehouse, capsys, column, what
):
    header = [h if h != column else "Something Else" for h in HEADER]
    renamed = write_file("renamed.csv", csv_text(header, [r for r, _ in ROWS[:3]]))
    code = load(warehouse, "--mapping", str(good_mapping), str(renamed), str(store_file))
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    prefix = re.escape(f"insiders: error: {renamed}: no column {column!r} (")
    assert re.match(prefix + what + ", ", line), line
    assert str(good_mapping) in line
    files = [r[0] for r in query(warehouse, "select source_file from raw.loaded_files")]
    assert files == [str(store_file)]
    assert (
        scalar(
            warehouse,
            "select count(*) from (select source_file from raw.transactions union all "
            "select source_file from raw.quarantined_rows) where source_file = ?",
            [str(renamed)],
        )
        == 0
    )
    loaded = sum(1 for _, reason in ROWS if reason is None)  # the good file, whole
    assert scalar(warehouse, "select count(*) from raw.transactions") == loaded


def test_cli_dates_not_in_the_mapped_format_fail_the_file_in_one_line(
    write_file, good_mapping, warehouse, capsys
):
    iso = [[*row[:4], f"2024-01-0{n + 1} 10:00", *row[5:]] for n, (row, _) in enumerate(ROWS[:5])]
    path = write_file("iso.csv", csv_text(HEADER, iso))
    assert load(warehouse, "--mapping", str(good_mapping), str(path)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"insiders: error: {path}: column 'Placed At': ")
    assert repr(DATE_FORMAT) in line
    assert table_counts(warehouse) == (0, 0, 0)


def test_cli_a_quantity_column_of_text_fails_the_file_in_one_line(
    write_file, good_mapping, warehouse, capsys
):
    wordy = [[*row[:3], "some", *row[4:]] for row, _ in ROWS[:5]]
    path = write_file("wordy.csv", csv_text(HEADER, wordy))
    assert load(warehouse, "--mapping", str(good_mapping), str(path)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"insiders: error: {path}: column 'Units': ")
    assert "whole number" in line and "'some'" in line
    assert table_counts(warehouse) == (0, 0, 0)


def test_cli_the_mapping_comes_from_the_environment(
    store_file, good_mapping, warehouse, capsys, monkeypatch
):
    monkeypatch.setenv("INSIDERS_MAPPING", str(good_mapping))
    assert load(warehouse, str(store_file)) == 0
    assert "(my-shop," in capsys.readouterr().out
    assert query(warehouse, "select layout from raw.loaded_files") == [("my-shop",)]


def test_cli_a_bad_mapping_in_the_environment_is_one_line(
    tmp_path, store_file, warehouse, capsys, monkeypatch
):
    bad = tmp_path / "env.yml"
    bad.write_text(BASE + "colour: red\n")
    monkeypatch.setenv("INSIDERS_MAPPING", str(bad))
    assert load(warehouse, str(store_file)) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"insiders: error: {bad}:10: ")
    assert table_counts(warehouse) == (0, 0, 0)


def test_cli_mapping_option_wins_over_the_environment(
    tmp_path, store_file, good_mapping, warehouse, capsys, monkeypatch
):
    bad = tmp_path / "env.yml"
    bad.write_text(BASE + "colour: red\n")
    monkeypatch.setenv("INSIDERS_MAPPING", str(bad))
    assert load(warehouse, "--mapping", str(good_mapping), str(store_file)) == 0
    assert query(warehouse, "select layout from raw.loaded_files") == [("my-shop",)]


# --- 3. Dagster op config ----------------------------------------------------------------------


def materialise_raw(warehouse: Path, source: Path, mapping: Path):
    """Materialise just the loader asset, as the launchpad would with this op config."""
    from orchestration.definitions import raw_transactions
    from orchestration.resources import WarehouseResource

    return materialize(
        [raw_transactions],
        resources={"warehouse": WarehouseResource(path=str(warehouse))},
        run_config={
            "ops": {
                "raw_transactions": {"config": {"source": str(source), "mapping": str(mapping)}}
            }
        },
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def failure_descriptions(result) -> list[str]:
    """The description of each step's user Failure (what the UI shows first)."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None:
                out.append(data.user_failure_data.description)
    return out


def test_dagster_loads_with_the_mapping_of_its_op_config(store_file, good_mapping, warehouse):
    result = materialise_raw(warehouse, store_file, good_mapping)
    assert result.success
    loaded = sum(1 for _, reason in ROWS if reason is None)
    assert query(warehouse, "select layout, loaded_rows from raw.loaded_files") == [
        ("my-shop", loaded)
    ]


def test_dagster_a_bad_mapping_fails_the_run_in_its_one_line(tmp_path, store_file, warehouse):
    bad = tmp_path / "bad.yml"
    text = BASE.replace("  unit_price: Price\n", "  unit_price: Qty\n")
    bad.write_text(text)
    result = materialise_raw(warehouse, store_file, bad)
    assert not result.success
    with pytest.raises(MappingError) as caught:
        read_mapping(bad)
    assert failure_descriptions(result) == [str(caught.value)]
    assert str(caught.value).startswith(f"{bad}:{line_of(text, 'unit_price')}: ")
    assert table_counts(warehouse) == (0, 0, 0)


# --- 4. a custom mapping end to end ------------------------------------------------------------


def expected_unit_price(total: str, quantity: str) -> Decimal:
    return (Decimal(total) / abs(Decimal(quantity))).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


def is_return(row: list[str]) -> bool:
    return row[0].startswith("C") or row[8].strip().lower() == "returned"


def test_a_custom_mapping_end_to_end(store_file, good_mapping, warehouse):
    mapping = read_mapping(good_mapping)
    report = load_files(warehouse, [store_file], mapping)
    assert report.failed == []
    good = [(n, row) for n, (row, reason) in enumerate(ROWS, start=2) if reason is None]
    bad = [(n, reason) for n, (row, reason) in enumerate(ROWS, start=2) if reason is not None]

    rows = query(
        warehouse,
        """
        select source_line, InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
               UnitPrice, CustomerID, Country, line_kind
        from raw.transactions where source_file = ? order by source_line
        """,
        [str(store_file)],
    )
    assert [r[0] for r in rows] == [n for n, _ in good]
    for (line, row), got in zip(good, rows, strict=True):
        quantity = abs(int(row[3])) * (-1 if is_return(row) else 1)
        assert got[1:5] == (row[0], row[1], row[2], quantity), line
        assert got[5] == datetime.strptime(row[4], DATE_FORMAT), line
        assert got[6] == expected_unit_price(row[5], row[3]), line
        assert got[8] == row[7] and got[9] == "record", line

    # Customer ids: e-mails and UUIDs become keys, the same for one address in any case;
    # a plain number stays; a blank one is a guest.
    customer = {line: got[7] for (line, _), got in zip(good, rows, strict=True)}
    by_value: dict[str, set[str]] = {}
    for (_, row), got in zip(good, rows, strict=True):
        value = row[6].strip()
        if value and not value.isdigit():
            assert re.fullmatch(r"cust-[0-9a-f]{20}", got[7]), got[7]
            by_value.setdefault(value.lower(), set()).add(got[7])
        elif value:
            assert got[7] == value
        else:
            assert got[7] is None
    assert {len(keys) for keys in by_value.values()} == {1}  # one key per address
    assert len({next(iter(k)) for k in by_value.values()}) == len(by_value)  # distinct
    ann = next(iter(by_value["ann@example.com"]))
    assert ann == customer[2] == customer[4] == customer[5]
    identities = dict(
        query(warehouse, "select customer_key, lower(customer_ref) from raw.customer_identities")
    )
    assert identities[ann] == "ann@example.com"
    assert identities[next(iter(by_value[UUID]))] == UUID

    # Quarantine: every bad record with its reason, in the file's own column names.
    quarantined = query(
        warehouse,
        "select source_line, reason, raw_record from raw.quarantined_rows "
        "where source_file = ? order by source_line",
        [str(store_file)],
    )
    assert [(n, reason) for n, reason, _ in quarantined] == bad
    records = {n: record for n, _, record in quarantined}
    gift = next(n for n, (row, _) in enumerate(ROWS, start=2) if "gift for" in ",".join(row))
    assert "gift for" in records[gift]  # the record is kept, its e-mail address is not

    # The ledger reconciles.
    ledger = query(
        warehouse,
        "select layout, raw_lines, loaded_rows, quarantined_rows, refund_rows "
        "from raw.loaded_files where source_file = ?",
        [str(store_file)],
    )
    assert ledger == [("my-shop", len(ROWS), len(good), len(bad), 0)]
    assert ledger[0][1] == ledger[0][2] + ledger[0][3]

    # No e-mail address anywhere but in raw.customer_identities.
    for table in ("transactions", "quarantined_rows"):
        text = scalar(
            warehouse,
            f"select coalesce(string_agg(cast(t as varchar), '|'), '') from raw.{table} t",
        ).lower()
        assert "mug" in text  # the rows are there, as text
        assert "@" not in text, (table, text)
        assert not any(email in text for email in EMAILS)


def test_loading_again_changes_nothing_and_a_new_mapping_reloads(
    store_file, good_mapping, warehouse
):
    mapping = read_mapping(good_mapping)
    load_files(warehouse, [store_file], mapping)
    snapshot = """
        select (select count(*) from raw.transactions), (select count(*) from raw.quarantined_rows),
               (select list(loaded_at) from raw.loaded_files),
               (select sum(Quantity * UnitPrice) from raw.transactions)
    """
    before = query(warehouse, snapshot)
    again = load_files(warehouse, [store_file], mapping)
    assert again.loaded == [] and again.skipped == [(str(store_file), "unchanged")]
    assert query(warehouse, snapshot) == before

    # The same file under a mapping that no longer excludes voided orders: loaded
    # again, its rows replaced (the voided line now loads), not added to.
    changed = good_mapping.with_name("no-exclude.yml")
    changed.write_text(MAPPING.split("exclude:")[0])
    report = load_files(warehouse, [store_file], read_mapping(changed))
    assert [f.path for f in report.loaded] == [str(store_file)]
    good = sum(1 for _, reason in ROWS if reason is None)
    voided = sum(1 for row, _ in ROWS if len(row) > 8 and row[8] == "void")
    assert table_counts(warehouse) == (good + voided, len(ROWS) - good - voided, 1)
    assert query(warehouse, "select Quantity from raw.transactions where InvoiceNo = 'A104'") == [
        (1,)
    ]
    assert query(
        warehouse, "select raw_lines, loaded_rows, quarantined_rows from raw.loaded_files"
    ) == [(len(ROWS), good + voided, len(ROWS) - good - voided)]
