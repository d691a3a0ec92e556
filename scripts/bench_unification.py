"""Benchmark the unification engine on synthetic people.

    .venv/bin/python scripts/bench_unification.py --rows 1000000                       # full runs
    .venv/bin/python scripts/bench_unification.py --rows 1000000 --mode incremental \
        --churn 0,0.001,0.01 --repeats 5                                                # ticks

Data: ~85% distinct persons, the rest duplicates of them as Marketo would hold them (same email in other
case, plus-addressed email, or another address at the same domain with the same name), 2% without email.
Rules: the default people rules (same_email, same_name_and_company).

`full` prints wall times, cluster counts and peak RSS (ru_maxrss, which includes the generated input) of
a first run, a churned rerun and a no-op rerun. `incremental` builds the state from a first full run,
then per churn level measures one tick both ways, side by side and alternating (the machine is shared):
`unify()` over the whole churned table against `unify_changes()` with the changed rows, removed ids and
merge map (state held as in-memory tables, `records_by_id` a scan of the churned table). It prints the
median wall time and the median peak RSS above the process's resident set before the call (the input and
state both need), checks once that the applied deltas equal the full run's tables, and shows what
applying the deltas to the in-memory tables costs (the lake's job, not the engine's).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.settings import MatchRule, default_settings_path, load_settings
from molequle_dagster.unification import (
    KEY_COLUMNS,
    TablesState,
    UnificationChanges,
    UnificationResult,
    apply_changes,
    state_tables,
    unify,
    unify_changes,
)

TS = pa.timestamp("s", tz="UTC")


def _text(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _emails(person: np.ndarray, variant: np.ndarray) -> pa.Array:
    domain = _text("d", _str(person % 60_000), ".example.com")
    local = _text("user", _str(person))
    plain = _text(local, "@", domain)
    shouted = pc.utf8_upper(plain)
    plus = _text(local, "+news@", domain)
    other = _text("alt", _str(person), "@", domain)
    chosen = pc.case_when(
        pc.make_struct(pa.array(variant == 1), pa.array(variant == 2), pa.array(variant == 3)),
        shouted, plus, other, plain,
    )
    return pc.if_else(pa.array(variant == 4), pa.scalar(None, pa.string()), chosen)


def people(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    distinct = int(rows * 0.85)
    person = np.concatenate([np.arange(distinct), rng.integers(0, distinct, rows - distinct)])
    variant = np.zeros(rows, dtype=np.int64)
    variant[distinct:] = rng.integers(0, 4, rows - distinct)  # duplicates: same/upper/plus/other local
    variant[rng.random(rows) < 0.02] = 4  # no email
    base = datetime(2023, 1, 1, tzinfo=UTC)
    updated = rng.integers(0, 365 * 86400, rows)
    return pa.table(
        {
            "id": pa.array(rng.permutation(rows) + 1, pa.int64()),
            "email": _emails(person, variant),
            "firstName": _text("First", _str(person % 7919)),
            "lastName": _text("Last", _str(person)),
            "company": _text("Company ", _str(person % 60_000), " Inc."),
            "externalCompanyId": _str(person % 60_000),
            "title": pa.array(np.where(rng.random(rows) < 0.5, "Engineer", "Director")),
            "country": pa.array(np.where(rng.random(rows) < 0.7, "US", "DE")),
            "leadScore": pa.array(rng.integers(0, 100, rows), pa.int32()),
            "createdAt": pa.array([base] * 1, TS).take(pa.array(np.zeros(rows, dtype=np.int64))),
            "updatedAt": pc.cast(pa.array(updated + int(base.timestamp()), pa.int64()), TS),
        }
    )


@dataclass(frozen=True)
class Churn:
    table: pa.Table  # the whole table after the churn
    changed: pa.Table  # rows inserted or updated
    removed: pa.Array  # ids deleted or merged away
    merges: pa.Table  # loser_id, winner_id


def churn(table: pa.Table, fraction: float, seed: int = 11) -> Churn:
    """Change emails of `fraction` of the rows (half to fresh addresses, half to another row's), delete
    fraction/10, merge fraction/20 into another row (Marketo merge: the loser is gone) and add fraction/10
    new duplicates."""
    rng = np.random.default_rng(seed)
    rows = table.num_rows
    changed = rng.random(rows) < fraction
    donor = rng.integers(0, rows, rows)
    fresh = _text("moved", _str(np.arange(rows)), "@new.example.org")
    borrowed = table["email"].combine_chunks().take(pa.array(donor))
    new_email = pc.if_else(pa.array(rng.random(rows) < 0.5), fresh, borrowed)
    email = pc.if_else(pa.array(changed), new_email, table["email"].combine_chunks())
    table = table.set_column(table.column_names.index("email"), "email", email)
    fate = rng.random(rows)
    deleted, merged = fate < fraction / 10, (fate >= fraction / 10) & (fate < fraction * 3 / 20)
    keep = ~(deleted | merged)
    ids = table["id"].combine_chunks()
    winners = ids.filter(pa.array(keep)).take(pa.array(rng.integers(0, int(keep.sum()), int(merged.sum()))))
    merges = pa.table({"loser_id": ids.filter(pa.array(merged)), "winner_id": winners})
    removed = ids.filter(pa.array(~keep))
    updated = table.filter(pa.array(changed & keep))
    table = table.filter(pa.array(keep))
    added = table.take(pa.array(rng.integers(0, table.num_rows, int(rows * fraction / 10))))
    next_id = pc.max(ids).as_py() + 1
    added = added.set_column(0, "id", pa.array(np.arange(next_id, next_id + added.num_rows), pa.int64()))
    return Churn(pa.concat_tables([table, added]), pa.concat_tables([updated, added]), removed, merges)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set of this process, in MiB (Linux)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
    return values


def measured(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, peak MiB above the resident set before the call)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current resident set
    before = _memory_mb()["VmRSS"]
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    return result, seconds, _memory_mb()["VmHWM"] - before


def run_full(table: pa.Table, rules: list[MatchRule], fraction: float, now: datetime) -> None:
    started = time.perf_counter()
    first = unify(table, id_column="id", rules=rules, previous=None, entity="person", now=now)
    first_s = time.perf_counter() - started
    print(f"first run: {first_s:.1f} s, {first.unified.num_rows:,} unified people, "
          f"peak RSS {_rss_mb():.0f} MB")

    changed = churn(table, fraction).table
    started = time.perf_counter()
    second = unify(changed, id_column="id", rules=rules, previous=first.state, entity="person",
                   now=now + timedelta(minutes=30))
    churn_s = time.perf_counter() - started
    kept = pc.sum(pc.is_in(second.unified["unified_id"], value_set=first.unified["unified_id"])).as_py()
    print(f"{fraction:.0%}-churn rerun: {churn_s:.1f} s, {second.unified.num_rows:,} unified, "
          f"{kept:,} ids kept, {second.id_lineage.num_rows:,} retired by merge, peak RSS {_rss_mb():.0f} MB")

    started = time.perf_counter()
    third = unify(changed, id_column="id", rules=rules, previous=second.state, entity="person",
                  now=now + timedelta(minutes=60))
    same = third.links.equals(second.links) and third.id_lineage.equals(second.id_lineage)
    print(f"no-op rerun: {time.perf_counter() - started:.1f} s, identical output: {same}; "
          f"peak RSS {_rss_mb():.0f} MB")


def _same_tables(actual: dict[str, pa.Table], expected: dict[str, pa.Table]) -> bool:
    def ordered(name: str, table: pa.Table) -> pa.Table:
        return table.sort_by([(key, "ascending") for key in KEY_COLUMNS[name]])

    return all(ordered(name, actual[name]).equals(ordered(name, expected[name])) for name in expected)


def run_incremental(table: pa.Table, rules: list[MatchRule], levels: list[float], repeats: int,
                    now: datetime) -> None:
    first, first_s, _ = measured(
        lambda: unify(table, id_column="id", rules=rules, previous=None, entity="person", now=now))
    tables, build_s, _ = measured(
        lambda: state_tables(first, table, id_column="id", rules=rules, entity="person"))
    state = TablesState(tables)
    print(f"first full run {first_s:.1f} s; state tables built in {build_s:.1f} s "
          f"({tables['match_keys'].num_rows:,} match keys); resident {_memory_mb()['VmRSS']:.0f} MiB")
    tick = now + timedelta(minutes=10)
    for fraction in levels:
        after = churn(table, fraction)

        def records_by_id(ids: pa.Array, source: pa.Table = after.table) -> pa.Table:
            return source.filter(pc.is_in(source["id"], value_set=ids))

        def full(after: Churn = after) -> UnificationResult:
            return unify(after.table, id_column="id", rules=rules, previous=first.state, entity="person",
                         now=tick, merged_sources=after.merges)

        def incremental(after: Churn = after) -> UnificationChanges:
            return unify_changes(state, changed=after.changed, removed=after.removed,
                                 records_by_id=records_by_id, id_column="id", rules=rules,
                                 entity="person", now=tick, merged_sources=after.merges)

        timings: dict[str, list[tuple[float, float]]] = {"full": [], "incremental": []}
        results: dict[str, Any] = {}
        for repeat in range(repeats):
            order = ["full", "incremental"] if repeat % 2 == 0 else ["incremental", "full"]
            for name in order:
                results[name], seconds, peak = measured(full if name == "full" else incremental)
                timings[name].append((seconds, peak))
        changes: UnificationChanges = results["incremental"]
        applied, apply_s, _ = measured(lambda changes=changes: apply_changes(tables, changes))
        expected = state_tables(results["full"], after.table, id_column="id", rules=rules, entity="person")
        upserts = {name: delta.upserts.num_rows for name, delta in changes.deltas.items()}
        print(f"churn {fraction:.1%}: {after.changed.num_rows:,} changed, {len(after.removed):,} removed "
              f"({after.merges.num_rows:,} merged); {changes.affected_records:,} records in "
              f"{changes.affected_clusters:,} previous clusters reclustered")
        for name, runs in timings.items():
            seconds = statistics.median(s for s, _ in runs)
            peak = statistics.median(p for _, p in runs)
            spread = ", ".join(f"{s:.3f}" for s, _ in runs)
            print(f"  {name:<11} median {seconds:.3f} s (runs {spread}), peak +{peak:.0f} MiB")
        print(f"  upserts {upserts}; applying to in-memory tables {apply_s:.2f} s; "
              f"identical to the full run: {_same_tables(applied, expected)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=["full", "incremental"], default="full")
    parser.add_argument("--churn", default=None,
                        help="churn fraction (full mode; default 0.01) or comma-separated levels "
                             "(incremental mode; default 0,0.001,0.01)")
    parser.add_argument("--repeats", type=int, default=5, help="incremental mode: runs per level and engine")
    args = parser.parse_args()
    rules = load_settings(default_settings_path()).unification.people
    now = datetime(2024, 6, 1, tzinfo=UTC)

    started = time.perf_counter()
    table = people(args.rows)
    print(f"generated {table.num_rows:,} people in {time.perf_counter() - started:.1f} s; "
          f"RSS {_rss_mb():.0f} MB")
    if args.mode == "full":
        run_full(table, rules, float(args.churn or 0.01), now)
    else:
        levels = [float(level) for level in (args.churn or "0,0.001,0.01").split(",")]
        run_incremental(table, rules, levels, args.repeats, now)


if __name__ == "__main__":
    main()
