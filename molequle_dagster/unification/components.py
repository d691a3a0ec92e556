"""Connected components over row indices with numpy (no per-row Python, no scipy).

Algorithm: union-find run in bulk rounds. Each round looks up the current root of both ends of every
edge, hooks the larger root onto the smaller one (``np.minimum.at``), compresses every path fully by
pointer jumping, and keeps only edges whose ends still have different roots (rewritten as root pairs).
Roots only ever point to smaller indices, so the forest stays acyclic and every component's label is its
**smallest row index** - which the engine relies on (rows are sorted by source id, so the label is the
member with the smallest source id). Star-shaped edges from group-bys converge in a few rounds.
"""

from __future__ import annotations

import numpy as np


def _compress(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Label of each of `n` nodes = the smallest node index in its component; edge i = (left[i], right[i])."""
    parent = np.arange(n, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    while left.size:
        root_left = parent[left]
        root_right = parent[right]
        low = np.minimum(root_left, root_right)
        high = np.maximum(root_left, root_right)
        apart = low != high
        if not apart.any():
            break
        low, high = low[apart], high[apart]
        np.minimum.at(parent, high, low)
        parent = _compress(parent)
        left, right = low, high
    return parent
