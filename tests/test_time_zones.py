"""Order times with a UTC offset become the store's local time (the mapping's
``timezone``), ISO 8601's ``Z`` included; the expected times come from Python's
zoneinfo, not from the loader."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from orchestration.cli import main
from tests.conftest import query

STAMPS = [
    "2024-01-05T10:22:33Z",
    "2024-01-05T10:22:33z",
    "2024-01-05T10:22:33+05:30",
    "2024-07-05T10:22:33-04:00",
    "2024-03-31T00:59:59+00:00",  # one second before British Summer Time starts
    "2024-03-31T01:00:00+00:00",  # the first second of it
]

MAPPING = """\
name: iso
columns:
  order_id: order
  product_id: sku
  quantity: qty
  unit_price: price
  ordered_at: at
ordered_at:
  format: "%Y-%m-%dT%H:%M:%S%z"
  timezone: Europe/London
"""


def test_offsets_and_z_are_converted_to_the_store_zone(
    tmp_path: Path, warehouse: Path, capsys
) -> None:
    source = tmp_path / "orders.csv"
    lines = ["order,sku,qty,price,at"]
    lines += [f"{i},S{i},1,2.50,{stamp}" for i, stamp in enumerate(STAMPS, start=1)]
    source.write_text("\n".join(lines) + "\n")
    mapping = tmp_path / "iso.yml"
    mapping.write_text(MAPPING)
    assert (
        main(["load", "--warehouse", str(warehouse), "--mapping", str(mapping), str(source)]) == 0
    )
    london = ZoneInfo("Europe/London")
    expected = [
        (
            str(i),
            datetime.fromisoformat(stamp.replace("z", "Z")).astimezone(london).replace(tzinfo=None),
        )
        for i, stamp in enumerate(STAMPS, start=1)
    ]
    got = query(
        warehouse, "select InvoiceNo, InvoiceDate from raw.transactions order by source_line"
    )
    assert got == expected
    assert query(warehouse, "select count(*) from raw.quarantined_rows") == [(0,)]
