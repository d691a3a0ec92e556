"""Write-back change detection cost: `changes()` over a synthetic lake of N people (no HTTP).

    .venv/bin/python scripts/bench_write_back.py [people]   # default 1,000,000

Half the people already hold their unified id in Marketo, a quarter were pushed by us and not yet synced
back, a quarter need a push; the script checks that exactly that quarter is selected.
"""

import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

from molequle_dagster.assets.write_back import LEDGER_SCHEMA, changes
from molequle_dagster.lake import Lake
from molequle_dagster.settings import WriteBackMapping


def main(people: int) -> None:
    ids = np.arange(1, people + 1, dtype=np.int64)
    unified = pa.array([f"u-{i // 2}" for i in ids])
    synced = pa.array([u if i % 2 == 0 else None for i, u in zip(ids, unified.to_pylist(), strict=True)])
    pushed_rows = ids[ids % 4 == 1]
    with tempfile.TemporaryDirectory() as root:
        lake = Lake(root)
        lake.keyed("people", "id").commit(pa.table({"id": ids, "molequlePersonId": synced}))
        lake.keyed("person_unified_links", "source_id").commit(
            pa.table({"source_id": ids, "unified_id": unified})
        )
        ledger = pa.table(
            {
                "lead_id": pushed_rows,
                "marketo_field": ["molequlePersonId"] * len(pushed_rows),
                "value": unified.take(pa.array(pushed_rows - 1)),
                "pushed_at": pa.nulls(len(pushed_rows), LEDGER_SCHEMA.field("pushed_at").type),
            },
            schema=LEDGER_SCHEMA,
        )
        mapping = WriteBackMapping(
            source_table="unified_people", source_column="unified_id", marketo_field="molequlePersonId"
        )
        started = time.perf_counter()
        result = changes(lake, mapping, ledger)
        elapsed = time.perf_counter() - started
    assert result.num_rows == people // 4, result.num_rows
    print(
        f"people={people:,} changes={result.num_rows:,} seconds={elapsed:.2f} "
        f"rows_per_s={people / elapsed:,.0f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
