"""Fixture exports in the layouts stores really have, written by the tests themselves.

The presets of ``models_py/presets`` claim to read a Shopify orders export and a
WooCommerce order-items export as those products write them. These writers produce
such files from plain Python descriptions of orders (:class:`ShopifyOrder`,
:class:`WooOrder`), so a test can both write an export and derive, from the same
descriptions and without the loader, what the warehouse must answer:

* Shopify (Admin > Orders > Export, "CSV for Excel, Numbers, or other spreadsheet
  programs"): the export's whole header, one line per line item, the order-level fields
  (Email, Financial Status, Created at, Currency, totals, addresses, Refunded Amount,
  ...) on an order's first line only, blank on its other lines, ``Created at`` like
  ``2024-01-05 10:22:33 -0500``;
* WooCommerce ("Customer / Order / Coupon Export", format "Default - One Row per
  Item"): one row per item, the order's fields repeated on each, ``order_date`` like
  ``2024-01-05 10:22:33``, refunds per item (``item_refunded``, ``item_refunded_qty``);
* :func:`write_shopify_from_demo`: the synthetic demo data
  (:func:`models_py.demo_data.write_demo_data`) as a Shopify export whose customers are
  e-mail addresses, large enough for the whole graph (clustering, evaluation, report).
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from models_py.demo_data import write_demo_data

# The header of Shopify's orders export, in its order (2024).
SHOPIFY_HEADER: tuple[str, ...] = (
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Fulfilled at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Billing Name",
    "Billing Street",
    "Billing Address1",
    "Billing Address2",
    "Billing Company",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Shipping Name",
    "Shipping Street",
    "Shipping Address1",
    "Shipping Address2",
    "Shipping Company",
    "Shipping City",
    "Shipping Zip",
    "Shipping Province",
    "Shipping Country",
    "Shipping Phone",
    "Notes",
    "Note Attributes",
    "Cancelled at",
    "Payment Method",
    "Payment Reference",
    "Refunded Amount",
    "Vendor",
    "Outstanding Balance",
    "Employee",
    "Location",
    "Device ID",
    "Id",
    "Tags",
    "Risk Level",
    "Source",
    "Lineitem discount",
    "Tax 1 Name",
    "Tax 1 Value",
    "Tax 2 Name",
    "Tax 2 Value",
    "Tax 3 Name",
    "Tax 3 Value",
    "Tax 4 Name",
    "Tax 4 Value",
    "Tax 5 Name",
    "Tax 5 Value",
    "Phone",
    "Receipt Number",
    "Duties",
    "Billing Province Name",
    "Shipping Province Name",
    "Payment ID",
    "Payment Terms Name",
    "Next Payment Due At",
    "Payment References",
)

# The columns Shopify fills on every line of an order (the line item's own, the order
# name); every other column is given on the order's first line only.
SHOPIFY_LINE_COLUMNS: frozenset[str] = frozenset(
    {
        "Name",
        "Lineitem quantity",
        "Lineitem name",
        "Lineitem price",
        "Lineitem compare at price",
        "Lineitem sku",
        "Lineitem requires shipping",
        "Lineitem taxable",
        "Lineitem fulfillment status",
        "Vendor",
        "Lineitem discount",
    }
)

# The header of WooCommerce's "Customer / Order / Coupon Export", one row per item.
WOO_HEADER: tuple[str, ...] = (
    "order_id",
    "order_number",
    "order_number_formatted",
    "order_date",
    "paid_date",
    "completed_date",
    "status",
    "shipping_total",
    "shipping_tax_total",
    "fee_total",
    "fee_tax_total",
    "tax_total",
    "cart_discount",
    "order_discount",
    "discount_total",
    "order_total",
    "refunded_total",
    "order_currency",
    "payment_method",
    "payment_method_title",
    "transaction_id",
    "customer_ip_address",
    "customer_user_agent",
    "shipping_method",
    "customer_id",
    "customer_user",
    "customer_email",
    "billing_first_name",
    "billing_last_name",
    "billing_company",
    "billing_email",
    "billing_phone",
    "billing_address_1",
    "billing_address_2",
    "billing_postcode",
    "billing_city",
    "billing_state",
    "billing_state_code",
    "billing_country",
    "shipping_first_name",
    "shipping_last_name",
    "shipping_company",
    "shipping_phone",
    "shipping_address_1",
    "shipping_address_2",
    "shipping_postcode",
    "shipping_city",
    "shipping_state",
    "shipping_state_code",
    "shipping_country",
    "customer_note",
    "item_id",
    "item_product_id",
    "item_name",
    "item_sku",
    "item_quantity",
    "item_subtotal",
    "item_subtotal_tax",
    "item_total",
    "item_total_tax",
    "item_refunded",
    "item_refunded_qty",
    "item_meta",
    "shipping_items",
    "fee_items",
    "tax_items",
    "coupon_items",
    "refunds",
    "order_notes",
    "download_permissions",
)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


# --- Shopify ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopifyLine:
    """One line item: what Shopify calls Lineitem *; ``sku`` None: a line without one."""

    sku: str | None
    name: str
    quantity: int
    price: Decimal


@dataclass(frozen=True)
class ShopifyOrder:
    """One order as the store's admin shows it. ``status`` is the Financial Status
    (paid, refunded, partially_refunded, voided, ...); ``refunded`` the order's
    Refunded Amount; ``email`` None: a checkout without one."""

    name: str
    email: str | None
    created: datetime  # aware: written with its UTC offset
    country: str
    status: str
    lines: tuple[ShopifyLine, ...]
    refunded: Decimal = Decimal("0")
    shipping: Decimal = Decimal("4.90")
    taxes: Decimal = Decimal("0")
    currency: str = "USD"
    order_id: int = 0
    cancelled: bool = False
    note: str = "leave at the door, thanks"

    @property
    def subtotal(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.shipping + self.taxes


def shopify_rows(orders: Sequence[ShopifyOrder]) -> list[dict[str, str]]:
    """The export's records (column -> text), in file order: one per line item."""
    rows: list[dict[str, str]] = []
    for order in orders:
        created = order.created.strftime("%Y-%m-%d %H:%M:%S %z")
        first = {
            "Email": order.email or "",
            "Financial Status": order.status,
            "Paid at": "" if order.status == "voided" else created,
            "Fulfillment Status": "unfulfilled" if order.cancelled else "fulfilled",
            "Fulfilled at": "" if order.cancelled else created,
            "Accepts Marketing": "no",
            "Currency": order.currency,
            "Subtotal": _money(order.subtotal),
            "Shipping": _money(order.shipping),
            "Taxes": _money(order.taxes),
            "Total": _money(order.total),
            "Discount Amount": "0.00",
            "Shipping Method": "Standard",
            "Created at": created,
            "Billing Name": "A. Customer",
            "Billing Street": "1 High Street",
            "Billing Address1": "1 High Street",
            "Billing City": "Springfield",
            "Billing Zip": "'01234",
            "Billing Country": order.country,
            "Billing Phone": "+1 555 0100",
            "Shipping Name": "A. Customer",
            "Shipping Street": "1 High Street",
            "Shipping Address1": "1 High Street",
            "Shipping City": "Springfield",
            "Shipping Zip": "'01234",
            "Shipping Country": order.country,
            "Notes": order.note,
            "Note Attributes": "gift: no",
            "Cancelled at": created if order.cancelled else "",
            "Payment Method": "Shopify Payments",
            "Payment Reference": f"c{order.order_id}.1",
            "Refunded Amount": _money(order.refunded),
            "Outstanding Balance": "0.00",
            "Id": str(order.order_id or 5_000_000_000 + len(rows)),
            "Tags": "",
            "Risk Level": "Low",
            "Source": "web",
            "Tax 1 Name": "State Tax 0%",
            "Tax 1 Value": _money(order.taxes),
            "Receipt Number": "",
            "Payment ID": f"p{len(rows)}",
            "Payment References": f"c{len(rows)}.1",
        }
        for index, line in enumerate(order.lines):
            row = dict.fromkeys(SHOPIFY_HEADER, "")
            if index == 0:
                row.update(first)
            row.update(
                {
                    "Name": order.name,
                    "Lineitem quantity": str(line.quantity),
                    "Lineitem name": line.name,
                    "Lineitem price": _money(line.price),
                    "Lineitem compare at price": "",
                    "Lineitem sku": line.sku or "",
                    "Lineitem requires shipping": "true",
                    "Lineitem taxable": "true",
                    "Lineitem fulfillment status": "pending" if order.cancelled else "fulfilled",
                    "Vendor": "Acme Goods",
                    "Lineitem discount": "0.00",
                }
            )
            rows.append(row)
    return rows


def write_csv(path: Path, header: Sequence[str], rows: Sequence[dict[str, str]]) -> Path:
    """Write ``rows`` under ``header`` as the stores do: UTF-8, comma, CRLF-free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_shopify(path: Path, orders: Sequence[ShopifyOrder]) -> Path:
    """A Shopify orders export of ``orders`` at ``path``."""
    return write_csv(path, SHOPIFY_HEADER, shopify_rows(orders))


def _tz(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


def _line(sku: str | None, name: str, quantity: int, price: str) -> ShopifyLine:
    return ShopifyLine(sku, name, quantity, Decimal(price))


# The Shopify fixture: three customers (one writing her address in two cases), a guest
# checkout, every status the preset must handle.
SHOPIFY_ORDERS: tuple[ShopifyOrder, ...] = (
    ShopifyOrder(
        "#1001",
        "ann.lee@example.com",
        datetime(2024, 1, 5, 10, 22, 33, tzinfo=_tz(-5)),
        "US",
        "paid",
        (
            _line("MUG-01", "Blue mug", 2, "12.50"),
            _line(None, "Hand-made card, no SKU", 1, "4.00"),
            _line("TEA-07", "Tea, loose leaf (250g)", 3, "8.00"),
        ),
        taxes=Decimal("3.10"),
        order_id=5_600_000_001,
    ),
    ShopifyOrder(  # fully refunded: the refund is the whole total (no shipping or tax)
        "#1002",
        "Bob.Stone@Example.org",
        datetime(2024, 1, 7, 9, 0, 0, tzinfo=_tz(0)),
        "GB",
        "refunded",
        (
            _line("LAMP-2", "Desk lamp", 1, "45.00"),
            _line("BULB-9", "Bulb, warm white", 2, "7.50"),
        ),
        refunded=Decimal("60.00"),
        shipping=Decimal("0"),
        order_id=5_600_000_002,
    ),
    ShopifyOrder(  # voided before payment: no sale, every line quarantined
        "#1003",
        "carol@example.net",
        datetime(2024, 1, 8, 23, 45, 0, tzinfo=_tz(-8)),
        "CA",
        "voided",
        (
            _line("MUG-01", "Blue mug", 4, "12.50"),
            _line("TEA-07", "Tea, loose leaf (250g)", 1, "8.00"),
        ),
        cancelled=True,
        order_id=5_600_000_003,
    ),
    ShopifyOrder(  # partially refunded: one of the mugs came back
        "#1004",
        "ann.lee@example.com",
        datetime(2024, 2, 1, 8, 5, 9, tzinfo=_tz(-5)),
        "US",
        "partially_refunded",
        (
            _line("MUG-01", "Blue mug", 2, "12.50"),
            _line("SPOON-3", "Tea spoon", 4, "2.25"),
        ),
        refunded=Decimal("12.50"),
        order_id=5_600_000_004,
        note='Ring twice, please.\nThe bell is broken; ask for "Ann".',  # spans lines
    ),
    ShopifyOrder(
        "#1005",
        "Bob.Stone@Example.org",
        datetime(2024, 2, 3, 14, 30, 0, tzinfo=_tz(1)),
        "GB",
        "paid",
        (_line("LAMP-2", "Desk lamp", 2, "45.00"),),
        order_id=5_600_000_005,
    ),
    ShopifyOrder(
        "#1006",
        "carol@example.net",
        datetime(2024, 2, 10, 19, 0, 0, tzinfo=_tz(-8)),
        "CA",
        "paid",
        (
            _line("TEA-07", "Tea, loose leaf (250g)", 5, "8.00"),
            _line(None, "Gift wrap", 1, "3.50"),
        ),
        order_id=5_600_000_006,
    ),
    ShopifyOrder(  # a checkout without an e-mail address: a guest, no customer row
        "#1007",
        None,
        datetime(2024, 2, 11, 12, 0, 0, tzinfo=_tz(0)),
        "US",
        "paid",
        (_line("MUG-01", "Blue mug", 1, "12.50"), _line("SPOON-3", "Tea spoon", 2, "2.25")),
        order_id=5_600_000_007,
    ),
    ShopifyOrder(  # Ann again, her address in capitals, shipped to Canada: her last one
        "#1008",
        "ANN.LEE@EXAMPLE.COM",
        datetime(2024, 3, 2, 7, 15, 0, tzinfo=_tz(-5)),
        "CA",
        "paid",
        (_line("TEA-07", "Tea, loose leaf (250g)", 2, "8.00"),),
        order_id=5_600_000_008,
    ),
)


# --- WooCommerce -----------------------------------------------------------------------


@dataclass(frozen=True)
class WooItem:
    """One order item; ``refunded`` / ``refunded_qty``: what was refunded of it
    (WooCommerce counts refunded quantities negative)."""

    sku: str | None
    name: str
    quantity: int
    total: Decimal  # the line's total after discounts, before tax
    refunded: Decimal = Decimal("0")
    refunded_qty: int = 0


@dataclass(frozen=True)
class WooOrder:
    """One order: ``status`` is WooCommerce's (completed, processing, refunded,
    cancelled, pending, ...)."""

    order_id: int
    created: datetime  # naive: the store's local time, as WooCommerce writes it
    status: str
    email: str
    first_name: str
    last_name: str
    country: str
    items: tuple[WooItem, ...]
    customer_id: int = 0  # 0: a guest checkout (it still has a billing e-mail)
    shipping: Decimal = Decimal("5.00")
    currency: str = "EUR"
    refunds: tuple[int, ...] = field(default_factory=tuple)


def woo_rows(orders: Sequence[WooOrder]) -> list[dict[str, str]]:
    """The export's records (column -> text), one per item, the order's fields on each."""
    rows: list[dict[str, str]] = []
    item_id = 900
    for order in orders:
        items_total = sum((i.total for i in order.items), Decimal("0"))
        refunded = sum((i.refunded for i in order.items), Decimal("0"))
        created = order.created.strftime("%Y-%m-%d %H:%M:%S")
        done = order.status in ("completed", "refunded")
        base = dict.fromkeys(WOO_HEADER, "")
        base.update(
            {
                "order_id": str(order.order_id),
                "order_number": str(order.order_id),
                "order_number_formatted": str(order.order_id),
                "order_date": created,
                "paid_date": created if done else "",
                "completed_date": created if done else "",
                "status": order.status,
                "shipping_total": _money(order.shipping),
                "shipping_tax_total": "0.00",
                "fee_total": "0.00",
                "fee_tax_total": "0.00",
                "tax_total": "0.00",
                "cart_discount": "0.00",
                "order_discount": "0.00",
                "discount_total": "0.00",
                "order_total": _money(items_total + order.shipping),
                "refunded_total": _money(refunded),
                "order_currency": order.currency,
                "payment_method": "stripe",
                "payment_method_title": "Credit card (Stripe)",
                "transaction_id": f"pi_{order.order_id}",
                "customer_ip_address": "203.0.113.7",
                "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                "shipping_method": "Flat rate",
                "customer_id": str(order.customer_id),
                "customer_user": str(order.customer_id),
                "customer_email": order.email,
                "billing_first_name": order.first_name,
                "billing_last_name": order.last_name,
                "billing_email": order.email,
                "billing_phone": "+33 1 23 45 67 89",
                "billing_address_1": "12 rue de la Paix",
                "billing_postcode": "75002",
                "billing_city": "Paris",
                "billing_country": order.country,
                "shipping_first_name": order.first_name,
                "shipping_last_name": order.last_name,
                "shipping_address_1": "12 rue de la Paix",
                "shipping_postcode": "75002",
                "shipping_city": "Paris",
                "shipping_country": order.country,
                "shipping_items": "method:Flat rate|total:" + _money(order.shipping),
                "refunds": ";".join(str(r) for r in order.refunds),
            }
        )
        for item in order.items:
            item_id += 1
            row = dict(base)
            row.update(
                {
                    "item_id": str(item_id),
                    "item_product_id": str(item_id + 1000),
                    "item_name": item.name,
                    "item_sku": item.sku or "",
                    "item_quantity": str(item.quantity),
                    "item_subtotal": _money(item.total),
                    "item_subtotal_tax": "0.00",
                    "item_total": _money(item.total),
                    "item_total_tax": "0.00",
                    "item_refunded": _money(item.refunded),
                    "item_refunded_qty": str(item.refunded_qty),
                    "item_meta": "colour=blue" if item.sku else "",
                }
            )
            rows.append(row)
    return rows


def write_woocommerce(path: Path, orders: Sequence[WooOrder]) -> Path:
    """A WooCommerce order-items export of ``orders`` at ``path``."""
    return write_csv(path, WOO_HEADER, woo_rows(orders))


def _item(
    sku: str | None, name: str, quantity: int, total: str, refunded: str = "0", qty: int = 0
) -> WooItem:
    return WooItem(sku, name, quantity, Decimal(total), Decimal(refunded), qty)


WOO_ORDERS: tuple[WooOrder, ...] = (
    WooOrder(
        4101,
        datetime(2024, 3, 1, 9, 15, 0),
        "completed",
        "dora@example.fr",
        "Dora",
        "Martin",
        "FR",
        (_item("SCARF-R", "Scarf, red", 2, "30.00"), _item(None, "Gift card message", 1, "2.00")),
        customer_id=17,
    ),
    WooOrder(  # fully refunded: every item back
        4102,
        datetime(2024, 3, 3, 18, 40, 12),
        "refunded",
        "emil@example.de",
        "Emil",
        "Braun",
        "DE",
        (
            _item("HAT-W", "Wool hat", 1, "25.00", "25.00", -1),
            _item("GLOVE-L", "Gloves, large", 2, "36.00", "36.00", -2),
        ),
        customer_id=18,
        refunds=(4110,),
    ),
    WooOrder(  # cancelled: no sale
        4103,
        datetime(2024, 3, 4, 11, 0, 0),
        "cancelled",
        "dora@example.fr",
        "Dora",
        "Martin",
        "FR",
        (_item("SCARF-R", "Scarf, red", 1, "15.00"),),
        customer_id=17,
    ),
    WooOrder(  # pending payment: no sale yet
        4104,
        datetime(2024, 3, 5, 8, 30, 0),
        "pending",
        "emil@example.de",
        "Emil",
        "Braun",
        "DE",
        (_item("HAT-W", "Wool hat", 3, "75.00"), _item("GLOVE-L", "Gloves, large", 1, "18.00")),
        customer_id=18,
    ),
    WooOrder(  # completed, one of three scarves refunded afterwards
        4105,
        datetime(2024, 3, 9, 16, 5, 0),
        "completed",
        "dora@example.fr",
        "Dora",
        "Martin",
        "BE",
        (
            _item("SCARF-R", "Scarf, red", 3, "45.00", "15.00", 1),
            _item("HAT-W", "Wool hat", 1, "25.00"),
        ),
        customer_id=17,
        refunds=(4111,),
    ),
    WooOrder(  # a guest checkout: WooCommerce still has the billing e-mail
        4106,
        datetime(2024, 3, 12, 20, 0, 0),
        "processing",
        "Fay.Guest@Example.com",
        "Fay",
        "Guest",
        "NL",
        (_item("GLOVE-L", "Gloves, large", 4, "72.00"),),
    ),
    WooOrder(
        4107,
        datetime(2024, 3, 14, 10, 0, 0),
        "completed",
        "emil@example.de",
        "Emil",
        "Braun",
        "AT",
        (_item("SCARF-R", "Scarf, red", 2, "30.00"),),
        customer_id=18,
    ),
)


# --- the demo data as a Shopify export -------------------------------------------------


def demo_email(customer_id: str) -> str:
    """The e-mail address a demo customer gets: 12345 -> ``Customer.12345@Example.com``."""
    return f"Customer.{customer_id}@Example.com"


@dataclass(frozen=True)
class DemoExport:
    """A Shopify export made from the demo data: where, and the addresses it holds."""

    path: Path
    emails: frozenset[str]
    lines: int  # line items written (records after the header)


def write_shopify_from_demo(
    directory: Path, customers: int = 150, seed: int = 7, every_refund: int = 9
) -> DemoExport:
    """The synthetic demo data (daily layout) rewritten as a Shopify orders export.

    Each invoice becomes an order ``#<InvoiceNo>`` whose customer is an e-mail address
    (:func:`demo_email`; guests have none) and whose ``Created at`` is written in
    New York's winter offset (-0500) for the same instant; every ``every_refund``-th
    order of a customer is partially refunded (its first line's value). Cancellation
    invoices (``C...``) have no Shopify equivalent and are left out; the demo's
    deliberately bad lines stay (a continuation line of an order, as they follow their
    original), and the truncated record is dropped. The file is written to
    ``directory / "shopify_orders_export.csv"``, outside the demo data's folder, so it
    is not listed as synthetic.
    """
    demo = write_demo_data(directory / "demo", customers=customers, seed=seed, layout="daily")
    with demo.path.open(encoding="utf-8", newline="") as handle:
        source = [row for row in csv.reader(handle)][1:]
    rows: list[dict[str, str]] = []
    emails: set[str] = set()
    previous: str | None = None
    orders = 0
    first_row: dict[str, str] = {}
    subtotal = Decimal("0")

    def close() -> None:
        if first_row:
            first_row["Subtotal"] = _money(subtotal)
            first_row["Total"] = _money(subtotal)

    for record in source:
        if len(record) != 8:
            continue
        invoice, stock, description, quantity, stamp, price, customer, country = record
        if invoice.startswith("C"):
            continue
        if invoice != previous or not invoice:
            close()
            previous = invoice
            orders += 1
            subtotal = Decimal("0")
            email = demo_email(customer.split(".")[0]) if customer else ""
            if email:
                emails.add(email)
            try:
                instant = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
            except ValueError:
                created = stamp  # the demo's unreadable date, kept unreadable
            else:
                created = (instant - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S -0500")
            refund = ""
            status = "paid"
            if email and orders % every_refund == 0:
                try:
                    refund = _money(Decimal(price) * int(quantity))
                    status = "partially_refunded"
                except (ArithmeticError, ValueError):
                    refund = ""
            row = dict.fromkeys(SHOPIFY_HEADER, "")
            row.update(
                {
                    "Email": email,
                    "Financial Status": status,
                    "Paid at": created,
                    "Fulfillment Status": "fulfilled",
                    "Accepts Marketing": "yes",
                    "Currency": "GBP",
                    "Shipping": "0.00",
                    "Taxes": "0.00",
                    "Created at": created,
                    "Billing Name": "Demo Customer",
                    "Billing Country": country,
                    "Shipping Country": country,
                    "Refunded Amount": refund or "0.00",
                    "Id": str(4_000_000_000 + orders),
                    "Source": "web",
                }
            )
            first_row = row
        else:
            row = dict.fromkeys(SHOPIFY_HEADER, "")
        row.update(
            {
                "Name": f"#{invoice}" if invoice else "",
                "Lineitem quantity": quantity,
                "Lineitem name": description,
                "Lineitem price": price,
                "Lineitem sku": stock,
                "Lineitem requires shipping": "true",
                "Lineitem taxable": "true",
                "Lineitem fulfillment status": "fulfilled",
                "Vendor": "Demo",
            }
        )
        with contextlib.suppress(ArithmeticError, ValueError):
            subtotal += Decimal(price) * int(quantity)
        rows.append(row)
    close()
    path = write_csv(directory / "shopify_orders_export.csv", SHOPIFY_HEADER, rows)
    return DemoExport(path=path, emails=frozenset(emails), lines=len(rows))
