"""Deterministic unified ids derived from source ids (vectorised; never random).

A new unified id is ``<prefix><16 hex digits>`` where prefix is ``up_`` (people) or ``ua_`` (accounts)
and the digits are a 64-bit hash of the text ``"<entity>:<source id>"`` (e.g. ``person:123``,
``account:company:7``) for the cluster's smallest source id. The hash is FNV-1a 64 over the UTF-8 bytes,
finished with the splitmix64 mixer: fixed, documented and implemented here, so ids never depend on a
library's hash seed or version. If a derived id was already issued (or is taken earlier in the same run),
the engine re-derives from ``"<entity>:<source id>#<n>"`` for n = 1, 2, ... (see `derive_unused_ids`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ID_PREFIX = {"person": "up_", "account": "ua_"}
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_DIGITS = 16


def _fnv1a(texts: pa.Array) -> np.ndarray:
    """FNV-1a 64 of each string, one numpy pass per byte position (strings here are short)."""
    texts = pc.cast(texts, pa.string()) if texts.type != pa.string() else texts
    texts = pa.concat_arrays([texts]) if texts.offset else texts  # buffers must start at 0
    count = len(texts)
    hashes = np.full(count, _FNV_OFFSET, dtype=np.uint64)
    if count == 0:
        return hashes
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[: count + 1]
    data = texts.buffers()[2]
    data_bytes = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    starts = offsets[:-1].astype(np.int64)
    for position in range(int(lengths.max(initial=0))):
        rows = np.nonzero(lengths > position)[0]
        mixed = hashes[rows] ^ data_bytes[starts[rows] + position].astype(np.uint64)
        hashes[rows] = mixed * _FNV_PRIME  # uint64 arithmetic wraps, as FNV requires
    return hashes


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _format(prefix: str, hashes: np.ndarray) -> pa.Array:
    """Render `prefix` + 16 lower-case hex digits per hash straight into an Arrow string buffer."""
    count = len(hashes)
    width = len(prefix) + _HEX_DIGITS
    chars = np.empty((count, width), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    for digit in range(_HEX_DIGITS):
        shift = np.uint64(4 * (_HEX_DIGITS - 1 - digit))
        chars[:, len(prefix) + digit] = _HEX[((hashes >> shift) & np.uint64(0xF)).astype(np.intp)]
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def _hashes(entity: str, source_ids: pa.Array, attempt: int) -> np.ndarray:
    keys = pc.binary_join_element_wise(f"{entity}:", pc.cast(source_ids, pa.string()), "")
    if attempt:
        keys = pc.binary_join_element_wise(keys, f"#{attempt}", "")
    return _splitmix64(_fnv1a(keys))


def derive_ids(entity: str, source_ids: pa.Array, attempt: int = 0) -> pa.Array:
    """The unified id a cluster whose smallest source id is `source_ids[i]` gets (attempt 0 = first try)."""
    return _format(ID_PREFIX[entity], _hashes(entity, source_ids, attempt))


IsIssued = Callable[[pa.Array], np.ndarray]


def derive_unused_ids(entity: str, source_ids: pa.Array, is_issued: IsIssued) -> pa.Array:
    """Derived ids avoiding every issued id and each other; rows are in priority order (earlier wins).

    `is_issued(ids)` says, per id, whether it was ever issued (a registry lookup, so the caller decides
    whether that is a scan of the whole registry or a keyed lookup). The common case is fully vectorised;
    only the (astronomically rare) clashes loop in Python.
    """
    hashes = _hashes(entity, source_ids, 0)
    ids = _format(ID_PREFIX[entity], hashes)
    clash = np.asarray(is_issued(ids), dtype=bool)
    first = np.zeros(len(hashes), dtype=bool)
    first[np.unique(hashes, return_index=True)[1]] = True  # ids are a bijection of the hashes
    clash |= ~first
    if not clash.any():
        return ids
    taken = set(pc.filter(ids, pa.array(~clash)).to_pylist())  # issued in this run, besides the registry
    fixed = ids.to_pylist()
    for row in np.nonzero(clash)[0]:
        attempt = 1
        while True:
            candidate = derive_ids(entity, source_ids.slice(int(row), 1), attempt)
            if candidate[0].as_py() not in taken and not is_issued(candidate)[0]:
                break
            attempt += 1
        fixed[row] = candidate[0].as_py()
        taken.add(fixed[row])
    return pa.array(fixed, pa.string())


def hash64(texts: pa.Array) -> np.ndarray:
    """The fixed 64-bit hash (FNV-1a + splitmix64) of each string, as int64 (for storing in Arrow)."""
    return _splitmix64(_fnv1a(texts)).view(np.int64)
