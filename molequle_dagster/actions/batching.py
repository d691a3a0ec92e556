"""Cutting a list into the batch sizes Marketo's write endpoints take (shared by actions and write-back)."""

from collections.abc import Sequence
from typing import TypeVar

from molequle_dagster.marketo.batching import batched
from molequle_dagster.marketo.writes import TRIGGER_BATCH

Item = TypeVar("Item")


def batches(items: Sequence[Item], size: int = TRIGGER_BATCH) -> list[list[Item]]:
    return [chunk for _, chunk in batched(items, size)]
