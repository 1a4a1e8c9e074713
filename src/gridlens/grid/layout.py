"""Where to draw each bus of a one-line diagram.

With the .dss ``Buscoords`` (:attr:`Feeder.coords`) the buses sit where the file puts them (a
bus without coordinates goes next to its nearest neighbour that has some). Without them the
layout is computed from the radial topology: a tidy tree with the source on the left, each
bus one column right of its parent, leaves one row apart and every other bus centred on its
children. Positions are scaled into ``[0, 1] x [0, 1]`` (y downwards, as in SVG).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gridlens.grid.feeder import Feeder

__all__ = ["bus_layout", "tree_layout"]


def _adjacency(feeder: Feeder) -> list[list[int]]:
    adj: list[list[int]] = [[] for _ in range(feeder.n_bus)]
    for br in feeder.branches:
        a, b = feeder.bus_index(br.from_bus), feeder.bus_index(br.to_bus)
        if a != b:
            adj[a].append(b)
            adj[b].append(a)
    return adj


def tree_layout(feeder: Feeder) -> np.ndarray:
    """(n_bus, 2) positions of a tidy tree rooted at the source (columns = depth)."""
    n = feeder.n_bus
    adj = _adjacency(feeder)
    root = feeder.bus_index(feeder.source_bus)
    parent = np.full(n, -1)
    depth = np.zeros(n)
    order: list[int] = []
    seen = np.zeros(n, dtype=bool)
    children: list[list[int]] = [[] for _ in range(n)]
    roots = [root] + [k for k in range(n) if k != root]
    for r in roots:  # islands (none on a connected feeder) hang below the main tree
        if seen[r]:
            continue
        seen[r] = True
        q = deque([r])
        while q:
            u = q.popleft()
            order.append(u)
            for v in adj[u]:
                if not seen[v]:
                    seen[v] = True
                    parent[v] = u
                    depth[v] = depth[u] + 1
                    children[u].append(v)
                    q.append(v)
    y = np.zeros(n)
    row = 0.0

    def place(u: int) -> None:  # iterative post-order: deep feeders overflow recursion
        nonlocal row
        stack: list[tuple[int, bool]] = [(u, False)]
        while stack:
            node, done = stack.pop()
            kids = children[node]
            if not kids:
                y[node] = row
                row += 1
            elif done:
                y[node] = float(np.mean([y[c] for c in kids]))
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(kids))

    for r in order:
        if parent[r] == -1:
            place(r)
    return np.column_stack([depth, y])


def _coords_layout(feeder: Feeder) -> np.ndarray | None:
    if not feeder.coords:
        return None
    known = {b: (x, y) for b, x, y in feeder.coords}
    n = feeder.n_bus
    pos = np.full((n, 2), np.nan)
    for k, name in enumerate(feeder.bus_names):
        if name in known:
            pos[k] = known[name]
    have = ~np.isnan(pos[:, 0])
    if have.sum() < max(2, n // 2):
        return None
    span = float(np.ptp(pos[have], axis=0).max()) or 1.0
    adj = _adjacency(feeder)
    for _ in range(n):  # fill the rest from placed neighbours, a ring at a time
        missing = [k for k in range(n) if not have[k]]
        if not missing:
            break
        placed = False
        for k in missing:
            nb = [v for v in adj[k] if have[v]]
            if nb:
                pos[k] = pos[nb].mean(axis=0) + span * 0.02
                have[k] = placed = True
        if not placed:
            break
    pos[~have] = np.nanmin(pos, axis=0)
    pos[:, 1] = -pos[:, 1]  # y up in the .dss, down in SVG
    return pos


def bus_layout(feeder: Feeder) -> tuple[np.ndarray, str]:
    """(n_bus, 2) positions in [0, 1]² and where they come from: ``"buscoords"`` or
    ``"tree"``."""
    pos = _coords_layout(feeder)
    source = "buscoords"
    if pos is None:
        pos, source = tree_layout(feeder), "tree"
    lo = pos.min(axis=0)
    span = np.ptp(pos, axis=0)
    span[span == 0] = 1.0
    return (pos - lo) / span, source
