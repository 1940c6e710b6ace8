"""Layout: a DAG with box sizes -> box centres and edge routes (a layered, Sugiyama-style layout).

Input: node sizes (width, height) in any unit, directed edges, and a weight
per node (how strongly it keeps to the position its neighbours ask for).
Output: a `Layout` with every node's centre, every edge's polyline, and the
drawing's size, top to bottom. Used when Graphviz `dot` is not installed and
for the HTML viewer. The steps:

1. layers: longest path from the sources; a source (an input, a parameter)
   then moves down to just above its first consumer, so side inputs sit
   beside the op that reads them;
2. an edge spanning several layers gets a chain of small dummy nodes, so it
   bends around boxes instead of crossing them;
3. crossing reduction: alternating down and up sweeps of the barycentre
   heuristic, keeping the order with the fewest crossings;
4. x coordinates: each layer in turn, nodes go to the mean position of their
   neighbours as nearly as their order and spacing allow — a least-squares
   fit under ordering constraints, solved exactly by pool-adjacent-violators.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

DUMMY = "\0dummy"


@dataclass
class Layout:
    """Box centres, edge polylines (from the source's bottom to the target's top) and the extent."""

    pos: dict[str, tuple[float, float]]
    size: dict[str, tuple[float, float]]
    routes: dict[tuple[str, str], list[tuple[float, float]]]
    width: float
    height: float
    layers: list[list[str]]


def layered_layout(sizes: dict[str, tuple[float, float]], edges: list[tuple[str, str]], *,
                   weights: dict[str, float] | None = None, node_gap: float = 0.3,
                   layer_gap: float = 0.5, margin: float = 0.2, sweeps: int = 8) -> Layout:
    """Return a top-to-bottom layered layout of the DAG (sizes and gaps in one unit)."""
    G = nx.DiGraph()
    G.add_nodes_from(sizes)
    G.add_edges_from((u, v) for u, v in edges if u != v)
    rank = _ranks(G)
    H, chains = _split_long_edges(G, rank)
    n_layers = max(rank.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for v in _dfs_order(H):
        layers[rank[v]].append(v)
    layers = _reduce_crossings(H, layers, sweeps)
    width = {v: sizes[v][0] if v in sizes else 0.05 for v in H}
    weight = {v: (weights or {}).get(v, 1.0) if v in sizes else 0.5 for v in H}
    x = _assign_x(H, layers, width, weight, node_gap)

    # y: each layer as tall as its tallest box, a gap between layers.
    y, top = {}, margin
    for layer in layers:
        h = max((sizes[v][1] for v in layer if v in sizes), default=0.1)
        for v in layer:
            y[v] = top + h / 2
        top += h + layer_gap
    left = min((x[v] - width[v] / 2 for v in H), default=0.0)
    pos = {v: (x[v] - left + margin, y[v]) for v in H}
    routes = {}
    for (u, v), chain in chains.items():
        pts = [(pos[u][0], pos[u][1] + sizes[u][1] / 2)]
        pts += [pos[d] for d in chain]
        pts.append((pos[v][0], pos[v][1] - sizes[v][1] / 2))
        routes[(u, v)] = pts
    extent_w = max((pos[v][0] + width[v] / 2 for v in H), default=0.0) + margin
    return Layout({v: pos[v] for v in sizes}, dict(sizes), routes, extent_w, top - layer_gap + margin,
                  [[v for v in layer if v in sizes] for layer in layers])


def _ranks(G: nx.DiGraph) -> dict[str, int]:
    rank: dict[str, int] = {}
    for v in nx.topological_sort(G):
        rank[v] = max((rank[u] + 1 for u in G.predecessors(v)), default=0)
    # Sources move down next to their first consumer (parameters beside the op reading them).
    for v in G:
        if G.in_degree(v) == 0 and G.out_degree(v) > 0:
            rank[v] = max(0, min(rank[w] for w in G.successors(v)) - 1)
    return rank


def _split_long_edges(G: nx.DiGraph, rank: dict) -> tuple[nx.DiGraph, dict]:
    """Return the graph with a dummy node per layer crossed, and each edge's dummies."""
    H = nx.DiGraph()
    H.add_nodes_from(G)
    chains = {}
    for u, v in G.edges:
        chain, prev = [], u
        for r in range(rank[u] + 1, rank[v]):
            d = f"{DUMMY}:{u}->{v}:{r}"
            rank[d] = r
            H.add_edge(prev, d)
            chain.append(d)
            prev = d
        H.add_edge(prev, v)
        chains[(u, v)] = chain
    return H, chains


def _dfs_order(H: nx.DiGraph) -> list[str]:
    """Return nodes in depth-first order from the sources (an initial order with few crossings)."""
    seen, order = set(), []
    for root in [v for v in H if H.in_degree(v) == 0] + list(H):
        if root in seen:
            continue
        stack = [root]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            order.append(v)
            stack.extend(reversed([w for w in H.successors(v) if w not in seen]))
    return order


def _reduce_crossings(H: nx.DiGraph, layers: list[list[str]], sweeps: int) -> list[list[str]]:
    best, best_count = [list(layer) for layer in layers], _crossings(H, layers)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        indices = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for i in indices:
            ref = {v: k for k, v in enumerate(layers[i - 1 if down else i + 1])}
            here = {v: k for k, v in enumerate(layers[i])}

            def key(v):
                nbrs = [ref[w] for w in (H.predecessors(v) if down else H.successors(v)) if w in ref]
                return (sum(nbrs) / len(nbrs)) if nbrs else here[v]
            layers[i] = sorted(layers[i], key=lambda v: (key(v), here[v]))
        count = _crossings(H, layers)
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
        if best_count == 0:
            break
    return best


def _crossings(H: nx.DiGraph, layers: list[list[str]]) -> int:
    total = 0
    for upper, lower in zip(layers, layers[1:]):
        pos_u = {v: k for k, v in enumerate(upper)}
        pos_l = {v: k for k, v in enumerate(lower)}
        pairs = sorted((pos_u[u], pos_l[v]) for u in upper for v in H.successors(u) if v in pos_l)
        for i, (a1, b1) in enumerate(pairs):
            total += sum(1 for a2, b2 in pairs[i + 1:] if a2 > a1 and b2 < b1)
    return total


def _assign_x(H: nx.DiGraph, layers: list[list[str]], width: dict, weight: dict, gap: float) -> dict:
    x = {}
    for layer in layers:                       # start packed, centred on 0
        offsets = _offsets(layer, width, gap)
        mid = offsets[-1] / 2 if offsets else 0.0
        for v, o in zip(layer, offsets):
            x[v] = o - mid
    plan = ["down", "up"] * 3 + ["both", "both"]
    for direction in plan:
        order = range(len(layers)) if direction != "up" else range(len(layers) - 1, -1, -1)
        for i in order:
            layer = layers[i]
            desired = []
            for v in layer:
                nbrs = []
                if direction in ("down", "both"):
                    nbrs += [(x[u], weight[u]) for u in H.predecessors(v)]
                if direction in ("up", "both"):
                    nbrs += [(x[w], weight[w]) for w in H.successors(v)]
                total = sum(wt for _, wt in nbrs)
                desired.append(sum(p * wt for p, wt in nbrs) / total if total else x[v])
            for v, xv in zip(layer, _fit_ordered(desired, _offsets(layer, width, gap), [weight[v] for v in layer])):
                x[v] = xv
    return x


def _offsets(layer: list[str], width: dict, gap: float) -> list[float]:
    """Return the smallest centre offsets that keep neighbours `gap` apart."""
    out, at = [], 0.0
    for k, v in enumerate(layer):
        if k:
            at += (width[layer[k - 1]] + width[v]) / 2 + gap
        out.append(at)
    return out


def _fit_ordered(desired: list[float], offsets: list[float], weights: list[float]) -> list[float]:
    """Return x minimising sum w (x - desired)^2 with x[k+1] - x[k] >= offsets[k+1] - offsets[k].

    Substituting y = x - offset turns the constraints into y nondecreasing:
    weighted isotonic regression, solved by pool-adjacent-violators.
    """
    blocks: list[list[float]] = []             # [mean, weight, count]
    for d, o, w in zip(desired, offsets, weights):
        blocks.append([d - o, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    y = [m for m, _, n in blocks for _ in range(n)]
    return [yi + o for yi, o in zip(y, offsets)]
