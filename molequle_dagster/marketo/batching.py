"""Cutting a list into the batch sizes Marketo's endpoints take (300 filter values or records per call,
100 leads per campaign request, 10 activity types per feed): the one helper everything uses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def batched(items: Sequence[Item], size: int) -> Iterator[tuple[int, list[Item]]]:
    """(offset of the batch's first item, the batch) for consecutive batches of at most `size` items."""
    if size < 1:
        raise ValueError(f"size: expected a positive batch size, got {size}")
    for start in range(0, len(items), size):
        yield start, list(items[start : start + size])


def batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive batches of at most `size` items."""
    for _, batch in batched(items, size):
        yield batch
