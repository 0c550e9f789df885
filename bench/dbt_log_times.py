"""Where a run's dbt steps spend their time: every node's seconds from a ``dbt.log``.

    .venv/bin/python bench/dbt_log_times.py WAREHOUSE_DIR/.../.dbt/target/dbt.log [--top 15]

dbt logs one line per node as it finishes (``12 of 73 OK created sql table model
intermediate.int_x ... [SELECT 43720 in 9.81s]``, tests ``PASS`` / ``FAIL`` /
``WARN``). ``insiders run`` appends every dbt invocation of the warehouse to the same
file (``.dbt/target/dbt.log`` beside the warehouse; on PostgreSQL in
``postgres/<database>/``): this splits it at each ``Running with dbt=`` and prints, per
invocation, its wall time (``Finished running ... in N seconds``), the sum of its
nodes' seconds by kind (with 2 threads the sum exceeds the wall time) and the slowest
nodes. Keep a run's files with ``bench/scale.py --keep``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NODE = re.compile(
    r"\d+ of \d+ (?P<status>OK|PASS|FAIL|WARN|ERROR)\s+(?P<what>.+?)\s+\.*\s*"
    r"\[(?P<result>.*?) in (?P<seconds>[0-9.]+)s\]"
)
FINISHED = re.compile(r"Finished running .* \(([0-9.]+)s\)\.")


@dataclass
class Invocation:
    """One dbt invocation of the log: its nodes and its wall time."""

    wall: float | None = None
    nodes: list[tuple[float, str, str]] = field(default_factory=list)  # seconds, kind, name


def kind_of(what: str) -> str:
    """``created sql table model`` -> ``table``, a test -> ``test``, a seed -> ``seed``."""
    if what.startswith("created sql "):
        return what.split()[2]
    if what.startswith("loaded seed"):
        return "seed"
    return "test"


def parse(text: str) -> list[Invocation]:
    """The invocations of a dbt.log, in order."""
    invocations: list[Invocation] = []
    for raw in text.splitlines():
        line = ANSI.sub("", raw)
        if "Running with dbt=" in line:
            invocations.append(Invocation())
            continue
        if not invocations:
            continue
        match = NODE.search(line)
        if match:
            what = match.group("what")
            name = what.split()[-1] if kind_of(what) != "test" else what
            invocations[-1].nodes.append((float(match.group("seconds")), kind_of(what), name))
            continue
        match = FINISHED.search(line)
        if match:
            invocations[-1].wall = float(match.group(1))
    return [i for i in invocations if i.nodes]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    for number, invocation in enumerate(parse(args.log.read_text(errors="replace")), 1):
        kinds: dict[str, float] = {}
        for seconds, kind, _ in invocation.nodes:
            kinds[kind] = kinds.get(kind, 0.0) + seconds
        wall = "?" if invocation.wall is None else f"{invocation.wall:.1f}"
        by_kind = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(kinds.items(), key=lambda x: -x[1]))
        print(f"invocation {number}: {len(invocation.nodes)} nodes, wall {wall} s; {by_kind}")
        for seconds, kind, name in sorted(invocation.nodes, reverse=True)[: args.top]:
            print(f"  {seconds:7.2f} s  {kind:<11} {name}")


if __name__ == "__main__":
    main()
