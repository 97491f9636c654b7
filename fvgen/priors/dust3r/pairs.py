"""Scene graphs: which image pairs go through the network.

- ``complete``: every pair;
- ``swin`` (sliding window, ``winsize`` K): each image with its K next neighbours in name order,
  wrapping around the end when ``cyclic`` (default) so the first and last views are linked too;
- ``oneref`` (``refid`` R): image R with every other image.

Every pair is run in both orders ((i, j) and (j, i)), as DUSt3R does: the network's output is in
the first view's frame, and the two orders give two estimates of the same relation.
"""

from __future__ import annotations

from ...core.errors import FvgenError

GRAPHS = ("complete", "swin", "oneref")


def parse_graph(name: str) -> tuple[str, int | None]:
    """``"swin-3"`` -> ("swin", 3), ``"oneref-0"`` -> ("oneref", 0), ``"complete"`` -> ("complete", None)."""
    kind, _, arg = str(name).partition("-")
    if kind not in GRAPHS:
        raise FvgenError(f"unknown DUSt3R scene graph {name!r}: use complete, swin-K or oneref-R")
    if arg:
        try:
            return kind, int(arg)
        except ValueError:
            raise FvgenError(f"bad DUSt3R scene graph {name!r}: the number after '-' must be an integer") from None
    return kind, None


def make_pairs(n: int, graph: str = "complete", winsize: int = 3, refid: int = 0,
               cyclic: bool = True) -> list[tuple[int, int]]:
    """Directed pairs (i, j), both orders of each unordered pair, sorted; ``graph`` may carry its
    parameter (``swin-4``, ``oneref-2``), which overrides ``winsize`` / ``refid``."""
    if n < 2:
        raise FvgenError(f"DUSt3R needs at least 2 images, got {n}")
    kind, arg = parse_graph(graph)
    und: set[tuple[int, int]] = set()
    if kind == "complete":
        und = {(i, j) for i in range(n) for j in range(i + 1, n)}
    elif kind == "swin":
        k = winsize if arg is None else arg
        if k < 1:
            raise FvgenError(f"swin scene graph needs a window of at least 1, got {k}")
        for i in range(n):
            for d in range(1, k + 1):
                j = i + d
                if j >= n:
                    if not cyclic:
                        break
                    j %= n
                if i != j:
                    und.add((min(i, j), max(i, j)))
    else:
        r = refid if arg is None else arg
        if not 0 <= r < n:
            raise FvgenError(f"oneref scene graph: reference {r} is not an image index (0..{n - 1})")
        und = {(min(r, j), max(r, j)) for j in range(n) if j != r}
    return sorted(und | {(j, i) for i, j in und})


class DisjointSets:
    """Union-find over ``0..n-1`` (path halving)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; False when they were one set already."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[ra] = rb
        return True


def is_connected(n: int, pairs: list[tuple[int, int]]) -> bool:
    sets = DisjointSets(n)
    for i, j in pairs:
        sets.union(i, j)
    return len({sets.find(i) for i in range(n)}) == 1
