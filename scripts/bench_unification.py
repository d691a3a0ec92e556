"""Benchmark the unification engine: first run, 1%-churn rerun and no-op rerun on synthetic people.

    .venv/bin/python scripts/bench_unification.py --rows 1000000

Data: ~85% distinct persons, the rest duplicates of them as Marketo would hold them (same email in other
case, plus-addressed email, or another address at the same domain with the same name), 2% without email.
Rules: the default people rules (same_email, same_name_and_company). Prints wall times, cluster counts
and peak RSS (ru_maxrss, which includes the generated input).
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.settings import default_settings_path, load_settings
from molequle_dagster.unification import unify

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


def churn(table: pa.Table, fraction: float, seed: int = 11) -> pa.Table:
    """Change emails of `fraction` of the rows (half to fresh addresses, half to another row's), delete
    fraction/10 and add fraction/10 new duplicates."""
    rng = np.random.default_rng(seed)
    rows = table.num_rows
    changed = rng.random(rows) < fraction
    donor = rng.integers(0, rows, rows)
    fresh = _text("moved", _str(np.arange(rows)), "@new.example.org")
    borrowed = table["email"].combine_chunks().take(pa.array(donor))
    new_email = pc.if_else(pa.array(rng.random(rows) < 0.5), fresh, borrowed)
    email = pc.if_else(pa.array(changed), new_email, table["email"].combine_chunks())
    table = table.set_column(table.column_names.index("email"), "email", email)
    keep = rng.random(rows) >= fraction / 10
    table = table.filter(pa.array(keep))
    added = table.take(pa.array(rng.integers(0, table.num_rows, int(rows * fraction / 10))))
    next_id = pc.max(table["id"]).as_py() + 1
    added = added.set_column(0, "id", pa.array(np.arange(next_id, next_id + added.num_rows), pa.int64()))
    return pa.concat_tables([table, added])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()
    rules = load_settings(default_settings_path()).unification.people
    now = datetime(2024, 6, 1, tzinfo=UTC)

    started = time.perf_counter()
    table = people(args.rows)
    print(f"generated {table.num_rows:,} people in {time.perf_counter() - started:.1f} s; "
          f"RSS {_rss_mb():.0f} MB")

    started = time.perf_counter()
    first = unify(table, id_column="id", rules=rules, previous=None, entity="person", now=now)
    first_s = time.perf_counter() - started
    print(f"first run: {first_s:.1f} s, {first.unified.num_rows:,} unified people, "
          f"peak RSS {_rss_mb():.0f} MB")

    changed = churn(table, args.churn)
    started = time.perf_counter()
    second = unify(changed, id_column="id", rules=rules, previous=first.state, entity="person",
                   now=now + timedelta(minutes=30))
    churn_s = time.perf_counter() - started
    kept = pc.sum(pc.is_in(second.unified["unified_id"], value_set=first.unified["unified_id"])).as_py()
    print(f"{args.churn:.0%}-churn rerun: {churn_s:.1f} s, {second.unified.num_rows:,} unified, "
          f"{kept:,} ids kept, {second.id_lineage.num_rows:,} retired by merge, peak RSS {_rss_mb():.0f} MB")

    started = time.perf_counter()
    third = unify(changed, id_column="id", rules=rules, previous=second.state, entity="person",
                  now=now + timedelta(minutes=60))
    same = third.links.equals(second.links) and third.id_lineage.equals(second.id_lineage)
    print(f"no-op rerun: {time.perf_counter() - started:.1f} s, identical output: {same}; "
          f"peak RSS {_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
