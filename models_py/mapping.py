"""How a store's order lines map onto the canonical ``raw`` shape: one YAML file.

Every dbt model, the clustering and the answers read one shape (``raw.transactions``,
the UCI Online Retail columns, typed). A store's export has its own column names, date
formats, string customer ids, order-level fields and refunds; a *mapping* says where
each canonical field is and how returns appear, and the loader does the rest, with the
same guarantees for every layout (every record loaded or quarantined with a reason,
idempotent per file, one-line errors). See the README, "Your own data".

A mapping is a YAML file (or a preset's name: :data:`PRESETS`, the files in
``models_py/presets/``). It is validated against :data:`SCHEMA` (JSON Schema) and
then for meaning (two fields on one column, a date format DuckDB cannot read, an
unknown time zone); every problem is one :class:`MappingError` line naming the file
and the line (``orders.yml:7: columns.quantity: ...``). ``extends: shopify`` starts
from a preset and overrides what the file gives (a store's time zone, its currency).

Without a mapping the loader picks a preset from each file's header
(:func:`detect`): the three Online Retail layouts share one header, and the dates of
a file's first records choose among them, as before there were mappings.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import yaml

PRESET_DIR = Path(__file__).with_name("presets")

# The canonical fields a mapping places, in raw.transactions' terms.
FIELDS: dict[str, str] = {
    "order_id": "InvoiceNo",
    "product_id": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "ordered_at": "InvoiceDate",
    "unit_price": "UnitPrice",
    "customer_id": "CustomerID",
    "country": "Country",
    "line_total": "LineTotal",
}
REQUIRED_FIELDS = ("order_id", "product_id", "quantity", "ordered_at")
# The three Online Retail presets share this header; their dates tell them apart.
ONLINE_RETAIL = ("uci", "kaggle", "daily")
PSEUDONYMISE = ("auto", "always", "never")

_COLUMN = {"type": "string", "minLength": 1}
_COLUMNS = {
    "oneOf": [_COLUMN, {"type": "array", "items": _COLUMN, "minItems": 1, "uniqueItems": True}]
}
_STATUS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["column", "values"],
    "properties": {
        "column": _COLUMN,
        "values": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
}
_FORMAT = {"type": "string", "minLength": 2, "pattern": "%"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Insiders order-lines mapping",
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
        "extends": {"type": "string"},
        "description": {"type": "string"},
        "columns": {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: _COLUMNS for name in FIELDS},
        },
        "ordered_at": {
            "type": "object",
            "additionalProperties": False,
            "required": ["format"],
            "properties": {
                "format": {"oneOf": [_FORMAT, {"type": "array", "items": _FORMAT, "minItems": 1}]},
                "timezone": {"type": "string", "minLength": 1},
            },
        },
        "customer_id": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["text", "integer"]},
                "pseudonymise": {"enum": list(PSEUDONYMISE)},
            },
        },
        "order_level": {"type": "array", "items": _COLUMN, "uniqueItems": True},
        "currency": {
            "type": "object",
            "additionalProperties": False,
            "required": ["column"],
            "properties": {
                "column": _COLUMN,
                "expected": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
            },
        },
        "returns": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cancelled_prefix": {"type": "string", "minLength": 1},
                "status": _STATUS,
                "refund": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["amount"],
                    "properties": {
                        "amount": _COLUMN,
                        "per": {"enum": ["order", "line"]},
                        "quantity": _COLUMN,
                    },
                },
            },
        },
        "exclude": _STATUS,
        "header": {"enum": ["exact", "subset"]},
    },
}


class MappingError(ValueError):
    """A mapping that cannot be used: one line naming the file, the line and why."""


@dataclass(frozen=True)
class Status:
    """Records whose ``column`` holds one of ``values`` (compared trimmed, any case)."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Mapping:
    """A validated mapping: where each canonical field is in a file's header and how
    to read it. ``columns`` maps a field to its source columns (several: the first that
    is not blank on a record). ``source`` names where it came from, for messages."""

    name: str
    source: str
    columns: dict[str, tuple[str, ...]]
    date_formats: tuple[str, ...]
    timezone: str | None = None
    pseudonymise: str = "auto"
    # "integer": ids are whole numbers (17850 or 17850.0), anything else is quarantined
    # (the Online Retail files); "text": any string, pseudonymised per ``pseudonymise``.
    customer_kind: str = "text"
    order_level: tuple[str, ...] = ()
    currency_column: str | None = None
    currency_expected: str | None = None
    cancelled_prefix: str | None = None
    return_status: Status | None = None
    refund_amount: str | None = None
    refund_per: str = "order"
    refund_quantity: str | None = None
    exclude: Status | None = None
    header: str = "subset"  # "exact": no other column may be in the header
    # The date formats of each layout a file's dates choose among (the Online Retail
    # family, when no preset was named); empty: ``date_formats`` holds.
    layouts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def offsets(self) -> bool:
        """Whether the dates carry a UTC offset (``%z``): converted to ``timezone``."""
        return any("%z" in f or "%Z" in f for f in self.date_formats)

    def source_columns(self) -> dict[str, str]:
        """Each source column the mapping reads -> what it is read for (messages)."""
        used: dict[str, str] = {}
        for name, columns in self.columns.items():
            for column in columns:
                used.setdefault(column, name)
        extras = {
            self.currency_column: "currency",
            self.return_status.column if self.return_status else None: "returns.status",
            self.refund_amount: "returns.refund.amount",
            self.refund_quantity: "returns.refund.quantity",
            self.exclude.column if self.exclude else None: "exclude",
        }
        for column, what in extras.items():
            if column:
                used.setdefault(column, what)
        for column in self.order_level:
            used.setdefault(column, "order_level")
        return used

    def with_layout(self, layout: str) -> Mapping:
        """This mapping with the dates of one of its ``layouts`` (chosen by a file)."""
        return dataclasses.replace(self, name=layout, date_formats=self.layouts[layout], layouts={})


# --- reading a mapping file -------------------------------------------------------------


def _lines(
    node: yaml.Node,
    loader: yaml.SafeLoader,
    lines: dict[tuple[Any, ...], int],
    path: tuple[Any, ...],
) -> None:
    """Record the line of every value under its path (keys as the loader reads them);
    a key given twice in one object is an error (YAML would keep the last silently)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise _Duplicate(key_node.start_mark.line + 1, "a key must be a name")
            if key in seen:
                raise _Duplicate(key_node.start_mark.line + 1, f"{key!r} given twice")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _lines(value_node, loader, lines, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, loader, lines, (*path, i))


class _Duplicate(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _parse(text: str, shown: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """YAML text -> (data, lines by path); a syntax error is one line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MappingError(f"{shown}{where}: not valid YAML ({problem})") from None
    if node is None:
        raise MappingError(f"{shown}: empty mapping file")
    loader = yaml.SafeLoader("")
    lines: dict[tuple[Any, ...], int] = {}
    try:
        _lines(node, loader, lines, ())
        data = loader.construct_document(node)
    except _Duplicate as exc:
        raise MappingError(f"{shown}:{exc.line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{shown}: not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()
    return data, lines


def _line(lines: dict[tuple[Any, ...], int], path: Sequence[Any]) -> int:
    path = tuple(path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _dotted(path: Sequence[Any]) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "(top level)"


def _schema_error(data: Any, lines: dict[tuple[Any, ...], int], shown: str) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: _line(lines, e.absolute_path))
    if not errors:
        return
    error = errors[0]
    # oneOf failures say little: the most relevant cause says what is wrong (for a
    # list of formats, the entry that is no format, not "is not of type 'string'").
    while error.context:
        causes = [e for e in error.context if e.validator != "type"] or list(error.context)
        error = max(causes, key=lambda e: len(e.absolute_path))
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
        where = _line(lines, [*path, extra[0]]) if extra else _line(lines, path)
        known = ", ".join(error.schema.get("properties", {}))
        raise MappingError(
            f"{shown}:{where}: {_dotted([*path, extra[0]]) if extra else _dotted(path)}: "
            f"unknown key (expected one of: {known})"
        )
    message = error.message
    if error.validator == "required":
        message = f"missing {message.split(' is a required property')[0]}"
    elif error.validator == "enum":
        message = f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    elif error.validator == "pattern" and path and path[-1] == "name":
        message = f"{error.instance!r}: use letters, digits, '_', '.', '-' (at most 64)"
    elif error.validator == "pattern" and "format" in path:
        message = f"{error.instance!r} is not a strptime format (no % directive)"
    raise MappingError(f"{shown}:{_line(lines, path)}: {_dotted(path)}: {message}")


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


def read_mapping(spec: str | Path) -> Mapping:
    """The mapping a ``--mapping`` value names: a preset's name or a YAML file.

    Raises :class:`MappingError` (one line, with the file and line) for a file that
    cannot be read, is no valid YAML, breaks the schema, or means nothing usable."""
    text_spec = str(spec)
    if text_spec in PRESETS:
        return preset(text_spec)
    path = Path(spec)
    shown = str(spec)
    if not path.exists():
        presets = ", ".join(PRESETS)
        raise MappingError(f"{shown}: no such mapping file (nor a preset: {presets})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MappingError(f"{shown}: cannot read the mapping ({reason})") from None
    return _from_text(text, shown)


def _from_text(text: str, shown: str, allow_layouts: bool = False) -> Mapping:
    data, lines = _parse(text, shown)
    if not isinstance(data, dict):
        raise MappingError(f"{shown}:1: a mapping is a YAML object (name:, columns:, ...)")
    layouts = data.pop("layouts", None) if allow_layouts else None
    if "extends" in data:
        # The file overrides what it gives of the preset (one setting is enough: the
        # time zone alone), so the schema judges the merged mapping, at the file's lines.
        base_name = data["extends"]
        if not isinstance(base_name, str) or base_name not in PRESETS:
            raise MappingError(
                f"{shown}:{_line(lines, ['extends'])}: extends: no preset {base_name!r} "
                f"(presets: {', '.join(PRESETS)})"
            )
        if "name" not in data:
            raise MappingError(f"{shown}:1: (top level): missing 'name'")
        base = _preset_data(base_name)
        data = _merge(base, {k: v for k, v in data.items() if k != "extends"})
    _schema_error(data, lines, shown)
    return _build(data, lines, shown, layouts)


def _columns(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _build(
    data: dict[str, Any],
    lines: dict[tuple[Any, ...], int],
    shown: str,
    layouts: dict[str, Any] | None = None,
) -> Mapping:
    def fail(path: Sequence[Any], problem: str) -> MappingError:
        return MappingError(f"{shown}:{_line(lines, path)}: {_dotted(path)}: {problem}")

    columns = {name: _columns(value) for name, value in data.get("columns", {}).items()}
    for name in REQUIRED_FIELDS:
        if name not in columns:
            raise fail(["columns"], f"missing {name} (the column holding the {_WHAT[name]})")
    if ("unit_price" in columns) == ("line_total" in columns):
        raise fail(["columns"], "map exactly one of unit_price and line_total")
    # A column may be the first choice of one field only: two fields on one column is
    # almost always a slip (quantity and price both on "Qty"). A fallback (a later
    # entry of a list) may repeat a column: product_id [sku, name] with description name.
    first: dict[str, str] = {}
    for name, cols in columns.items():
        key = cols[0].strip().lower()
        if key in first:
            raise fail(
                ["columns", name],
                f"{first[key]} and {name} both map to the column {cols[0]!r}",
            )
        first[key] = name
    if "ordered_at" not in data and not layouts:
        raise fail([], "missing ordered_at (its format: ordered_at: {format: '%Y-%m-%d %H:%M:%S'})")
    formats = _columns(data["ordered_at"]["format"]) if "ordered_at" in data else ()
    for i, fmt in enumerate(formats):
        problem = _format_problem(fmt)
        if problem:
            where = ["ordered_at", "format"] + ([i] if len(formats) > 1 else [])
            raise fail(where, problem)
    with_offset = [("%z" in f or "%Z" in f) for f in formats]
    if any(with_offset) and not all(with_offset):
        raise fail(["ordered_at", "format"], "give formats all with a UTC offset (%z) or none")
    timezone = data.get("ordered_at", {}).get("timezone")
    if timezone is not None and timezone not in _zones():
        raise fail(["ordered_at", "timezone"], f"unknown time zone {timezone!r}")
    customer = data.get("customer_id", {})
    if customer.get("kind") == "integer" and customer.get("pseudonymise") == "always":
        raise fail(
            ["customer_id", "pseudonymise"],
            "always keys every id: it needs kind: text (kind: integer keeps whole numbers)",
        )
    returns = data.get("returns", {})
    refund = returns.get("refund", {})
    if refund.get("quantity") and refund.get("per", "order") != "line":
        raise fail(["returns", "refund", "quantity"], "a refunded quantity needs per: line")

    def status(value: dict[str, Any] | None) -> Status | None:
        if not value:
            return None
        return Status(value["column"], tuple(v.strip().lower() for v in value["values"]))

    return Mapping(
        name=data["name"],
        source=shown,
        columns=columns,
        date_formats=formats,
        timezone=timezone,
        pseudonymise=data.get("customer_id", {}).get("pseudonymise", "auto"),
        customer_kind=data.get("customer_id", {}).get("kind", "text"),
        order_level=tuple(data.get("order_level", ())),
        currency_column=data.get("currency", {}).get("column"),
        currency_expected=(data.get("currency", {}).get("expected") or "").upper() or None,
        cancelled_prefix=returns.get("cancelled_prefix"),
        return_status=status(returns.get("status")),
        refund_amount=refund.get("amount"),
        refund_per=refund.get("per", "order"),
        refund_quantity=refund.get("quantity"),
        exclude=status(data.get("exclude")),
        header=data.get("header", "subset"),
        layouts={k: _columns(v) for k, v in (layouts or {}).items()},
    )


_WHAT = {
    "order_id": "order (invoice) id",
    "product_id": "product (line) id",
    "quantity": "quantity",
    "ordered_at": "order timestamp",
}


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


@cache
def _format_problem(fmt: str) -> str | None:
    """Why DuckDB cannot read dates in ``fmt`` (bound, never pasted), or None."""
    from models_py.locations import DUCKDB_CONFIG

    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        con.execute("select try_strptime('', ?)", [fmt]).fetchall()
    except duckdb.Error as exc:
        return f"{fmt!r} is not a date format DuckDB reads ({str(exc).splitlines()[-1].strip()})"
    finally:
        con.close()
    return None


# --- presets ----------------------------------------------------------------------------


def _preset_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.yml"))}


@cache
def _preset_data(name: str) -> dict[str, Any]:
    data, _ = _parse(_preset_files()[name].read_text(encoding="utf-8"), name)
    return data


@cache
def preset(name: str) -> Mapping:
    """A preset by name (``uci``, ``kaggle``, ``daily``, ``shopify``, ``woocommerce``)."""
    path = _preset_files()[name]
    return _from_text(path.read_text(encoding="utf-8"), f"preset {name}")


PRESETS: tuple[str, ...] = tuple(_preset_files())


@cache
def online_retail() -> Mapping:
    """The Online Retail header, its layout left to the file's dates."""
    base = preset("uci")
    return dataclasses.replace(
        base,
        name="online-retail",
        date_formats=(),
        layouts={name: preset(name).date_formats for name in ONLINE_RETAIL},
    )


MAPPING_ENV = "INSIDERS_MAPPING"  # the mapping of `insiders load`/`run` and the asset


def resolve_mapping(spec: str | Path | None = None) -> Mapping | None:
    """The mapping ``spec`` names (a preset or a YAML file), else ``$INSIDERS_MAPPING``'s;
    None when neither is set: each file is read with the preset its header fits."""
    import os

    chosen = str(spec) if spec else os.environ.get(MAPPING_ENV, "")
    return read_mapping(chosen) if chosen.strip() else None


def _key(column: str) -> str:
    return column.strip().lower()


def missing_columns(mapping: Mapping, header: Iterable[str]) -> list[tuple[str, str]]:
    """(column, what it is for) of the mapping's columns the header lacks."""
    present = {_key(h) for h in header}
    return [(c, what) for c, what in mapping.source_columns().items() if _key(c) not in present]


def detect(header: Sequence[str]) -> list[Mapping]:
    """The presets whose columns are all in ``header`` (the Online Retail family as one
    mapping whose layout the dates decide); an exact-header preset needs exactly its
    columns."""
    names = {_key(h) for h in header if h.strip()}
    found: list[Mapping] = []
    for name in PRESETS:
        if name in ONLINE_RETAIL[1:]:
            continue
        mapping = online_retail() if name == ONLINE_RETAIL[0] else preset(name)
        wanted = {_key(c) for c in mapping.source_columns()}
        if mapping.header == "exact" and names != wanted:
            continue
        if wanted <= names:
            found.append(mapping)
    return found


_EMAIL = re.compile(r"[^\s@,;:<>\"']+@[^\s@,;:<>\"']+")


def redact(text: str) -> str:
    """``text`` with anything shaped like an e-mail address replaced: what a message, a
    log line or a quarantined record shows of a record that may name a person."""
    return _EMAIL.sub("<e-mail>", text)
