"""Cutting a list into the batch sizes Marketo's write endpoints take (shared by actions and write-back)."""

from collections.abc import Sequence
from typing import TypeVar

from molequle_dagster.marketo.writes import TRIGGER_BATCH

Item = TypeVar("Item")


def batches(items: Sequence[Item], size: int = TRIGGER_BATCH) -> list[list[Item]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
