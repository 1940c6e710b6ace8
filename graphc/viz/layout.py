"""Layout: a DAG with box sizes -> box centres, edge routes and group boxes (a layered layout).

Input: node sizes (width, height) in any unit, directed edges, optional side
nodes (small sources drawn beside the one node they feed: parameters) and
optional nested groups (block instances). Output: a `Layout` with every
node's centre, every edge's polyline, a rectangle per group, and the
drawing's size, top to bottom. Used when Graphviz `dot` is not installed and
for the HTML viewer. The steps (Sugiyama's scheme):

1. layers: longest path from the sources; a source then moves down to just
   above its first consumer; side nodes share their owner's layer;
2. an edge spanning several layers gets a chain of small dummy nodes, so it
   bends around boxes instead of crossing them;
3. crossing reduction: alternating down and up sweeps of the barycentre
   heuristic, keeping the members of a group side by side, and keeping the
   order with the fewest crossings;
4. x coordinates: layer by layer, nodes go to the mean position of their
   neighbours as nearly as their order and spacing allow — a least-squares
   fit under ordering constraints, solved exactly by pool-adjacent-violators.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

DUMMY = "\0dummy"
GROUP_PAD = 0.1        # between a group's members and its box, per nesting level
LABEL_ROOM = 0.17      # above a group's box content, for its label
SIDE_GAP = 0.35        # between a node and its side nodes
SIDE_STACK = 0.06      # between stacked side nodes


@dataclass
class Layout:
    """Box centres, edge polylines, group rectangles (x0, y0, x1, y1, depth) and the extent."""

    pos: dict[str, tuple[float, float]]
    size: dict[str, tuple[float, float]]
    routes: dict[tuple[str, str], list[tuple[float, float]]]
    width: float
    height: float
    layers: list[list[str]]
    boxes: dict[str, tuple[float, float, float, float, int]] = field(default_factory=dict)


def layered_layout(sizes: dict[str, tuple[float, float]], edges: list[tuple[str, str]], *,
                   side: dict[str, str] | None = None, groups: dict[str, tuple[str, ...]] | None = None,
                   node_gap: float = 0.3, layer_gap: float = 0.5, margin: float = 0.2,
                   sweeps: int = 8) -> Layout:
    """Return a top-to-bottom layered layout of the DAG (sizes and gaps in one unit).

    `side` maps a side node to the node it feeds: it is drawn to the right of
    that node, stacked with its siblings, its edge entering from the side.
    `groups` gives a node's nested groups, outermost first: within a layer
    the members of a group stay side by side, and each group gets a box.
    """
    side = {s: o for s, o in (side or {}).items() if s in sizes and o in sizes}
    attached: dict[str, list[str]] = {}
    for s, o in side.items():
        attached.setdefault(o, []).append(s)
    main = [v for v in sizes if v not in side]
    G = nx.DiGraph()
    G.add_nodes_from(main)
    G.add_edges_from((u, v) for u, v in edges if u != v and u in G and v in G)
    rank = _ranks(G)
    H, chains = _split_long_edges(G, rank)
    group = {v: tuple((groups or {}).get(v, ())) for v in sizes}
    for (u, v), chain in chains.items():       # a dummy lies in the groups both ends share
        for d in chain:
            group[d] = _common_prefix(group[u], group[v])
    n_layers = max(rank.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for v in _dfs_order(H):
        layers[rank[v]].append(v)
    layers = _reduce_crossings(H, layers, sweeps, group)

    # A unit is a node with its side column: it reaches further right than left.
    column = {o: (max(sizes[s][0] for s in ss), sum(sizes[s][1] for s in ss) + SIDE_STACK * (len(ss) - 1))
              for o, ss in attached.items()}
    left_ext = {v: sizes[v][0] / 2 if v in sizes else 0.025 for v in H}
    right_ext = {v: left_ext[v] + (SIDE_GAP + column[v][0] if v in column else 0.0) for v in H}
    weight = {v: 1.0 if v in sizes else 0.05 for v in H}   # dummies give way to boxes
    x = _assign_x(H, layers, left_ext, right_ext, weight, group, node_gap)

    # y: each layer as tall as its tallest unit; more room where group boxes begin or end.
    depth_of = {v: len(g) for v, g in group.items()}
    y, top, bands = {}, margin, []
    for i, layer in enumerate(layers):
        if i:
            top += layer_gap + _group_room(layers[i - 1], layer, group, depth_of)
        else:
            top += _group_room([], layer, group, depth_of)
        h = max([sizes[v][1] for v in layer if v in sizes] + [column[v][1] for v in layer if v in column] + [0.1])
        for v in layer:
            y[v] = top + h / 2
        bands.append((top, top + h))
        top += h
    top += _group_room(layers[-1], [], group, depth_of) if layers else 0.0
    shift = margin - min((x[v] - left_ext[v] for v in H), default=0.0) + GROUP_PAD * (
        max(depth_of.values(), default=0) + 1)
    pos = {v: (x[v] + shift, y[v]) for v in H}
    for o, ss in attached.items():
        at = pos[o][1] - column[o][1] / 2
        for s in ss:
            pos[s] = (pos[o][0] + sizes[o][0] / 2 + SIDE_GAP + sizes[s][0] / 2, at + sizes[s][1] / 2)
            at += sizes[s][1] + SIDE_STACK

    routes = {}
    out_port, in_port = _ports(chains, pos, sizes)
    for (u, v), chain in chains.items():
        pts = [(pos[u][0] + out_port[(u, v)], pos[u][1] + sizes[u][1] / 2)]
        pts += [pos[d] for d in chain]
        pts.append((pos[v][0] + in_port[(u, v)], pos[v][1] - sizes[v][1] / 2))
        routes[(u, v)] = pts
    for s, o in side.items():
        (xs, ys), (xo, yo) = pos[s], pos[o]
        y_in = min(max(ys, yo - sizes[o][1] / 2 + 0.05), yo + sizes[o][1] / 2 - 0.05)
        routes[(s, o)] = [(xs - sizes[s][0] / 2, ys), (xo + sizes[o][0] / 2, y_in)]
    boxes = _group_boxes(layers, pos, left_ext, right_ext, group, bands)
    extent_w = max([pos[v][0] + right_ext[v] for v in H] + [b[2] for b in boxes.values()], default=0.0) + margin
    return Layout({v: pos[v] for v in sizes}, dict(sizes), routes, extent_w, top + margin,
                  [[v for v in layer if v in sizes] for layer in layers], boxes)


def _ranks(G: nx.DiGraph) -> dict[str, int]:
    rank: dict[str, int] = {}
    for v in nx.topological_sort(G):
        rank[v] = max((rank[u] + 1 for u in G.predecessors(v)), default=0)
    # Sources move down next to their first consumer (a label beside the loss's other input).
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


def _reduce_crossings(H: nx.DiGraph, layers: list[list[str]], sweeps: int, group: dict) -> list[list[str]]:
    layers = [_keep_groups_together(layer, {v: k for k, v in enumerate(layer)}, group) for layer in layers]
    best, best_count = [list(layer) for layer in layers], _crossings(H, layers)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        indices = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for i in indices:
            ref = {v: k for k, v in enumerate(layers[i - 1 if down else i + 1])}
            here = {v: k for k, v in enumerate(layers[i])}
            key = {}
            for v in layers[i]:
                nbrs = [ref[w] for w in (H.predecessors(v) if down else H.successors(v)) if w in ref]
                key[v] = (sum(nbrs) / len(nbrs)) if nbrs else here[v]
            layers[i] = _keep_groups_together(layers[i], key, group)
        count = _crossings(H, layers)
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
        if best_count == 0:
            break
    return best


def _keep_groups_together(layer: list[str], key: dict, group: dict, level: int = 0) -> list[str]:
    """Return the layer sorted by key, the members of each group (at every level) side by side.

    A group sits where the mean key of its members puts it.
    """
    units: dict = {}
    for v in layer:
        g = group.get(v, ())
        units.setdefault(g[level] if len(g) > level else (DUMMY, v), []).append(v)
    ordered = []
    for name, members in units.items():
        mean = sum(key[v] for v in members) / len(members)
        inner = members if isinstance(name, tuple) else _keep_groups_together(members, key, group, level + 1)
        ordered.append((mean, min(key[v] for v in members), inner))
    ordered.sort(key=lambda t: (t[0], t[1]))
    return [v for _, _, inner in ordered for v in inner]


def _crossings(H: nx.DiGraph, layers: list[list[str]]) -> int:
    total = 0
    for upper, lower in zip(layers, layers[1:]):
        pos_u = {v: k for k, v in enumerate(upper)}
        pos_l = {v: k for k, v in enumerate(lower)}
        pairs = sorted((pos_u[u], pos_l[v]) for u in upper for v in H.successors(u) if v in pos_l)
        for i, (a1, b1) in enumerate(pairs):
            total += sum(1 for a2, b2 in pairs[i + 1:] if a2 > a1 and b2 < b1)
    return total


def _assign_x(H, layers, left_ext, right_ext, weight, group, gap) -> dict:
    x = {}
    for layer in layers:                       # start packed, centred on 0
        offsets = _offsets(layer, left_ext, right_ext, group, gap)
        mid = offsets[-1] / 2 if offsets else 0.0
        for v, o in zip(layer, offsets):
            x[v] = o - mid
    for direction in ["down", "up"] * 3 + ["both", "both"]:
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
                # Dummies only count when no real node is a neighbour: the spine stays straight.
                heavy = max((wt for _, wt in nbrs), default=0.0)
                nbrs = [p for p, wt in nbrs if wt >= heavy]
                desired.append(sum(nbrs) / len(nbrs) if nbrs else x[v])
            fitted = _fit_ordered(desired, _offsets(layer, left_ext, right_ext, group, gap),
                                  [weight[v] for v in layer])
            for v, xv in zip(layer, fitted):
                x[v] = xv
    return x


def _offsets(layer, left_ext, right_ext, group, gap) -> list[float]:
    """Return the smallest centre offsets that keep neighbours apart (further across group borders)."""
    out, at = [], 0.0
    for k, v in enumerate(layer):
        if k:
            u = layer[k - 1]
            gu, gv = group.get(u, ()), group.get(v, ())
            shared = len(_common_prefix(gu, gv))
            border = (len(gu) - shared) + (len(gv) - shared)
            at += right_ext[u] + left_ext[v] + gap + GROUP_PAD * border
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


def _ports(chains: dict, pos: dict, sizes: dict) -> tuple[dict, dict]:
    """Return where each edge leaves its source and enters its target, as x offsets from the centre.

    Edges at one box fan out over its side in the order of where they come
    from (so they do not cross); the one most nearly in line stays straight.
    """
    def spread(groups: dict) -> dict:
        out = {}
        for node, items in groups.items():
            items.sort()
            w = sizes[node][0]
            step = min(0.3 * w / max(len(items) - 1, 1), 0.3)
            straight = min(range(len(items)), key=lambda k: abs(items[k][0] - pos[node][0]))
            for k, (_, edge) in enumerate(items):
                out[edge] = max(-0.45 * w, min(0.45 * w, (k - straight) * step))
        return out

    incoming, outgoing = {}, {}
    for (u, v), chain in chains.items():
        incoming.setdefault(v, []).append((pos[chain[-1]][0] if chain else pos[u][0], (u, v)))
        outgoing.setdefault(u, []).append((pos[chain[0]][0] if chain else pos[v][0], (u, v)))
    return spread(outgoing), spread(incoming)


def _common_prefix(a: tuple, b: tuple) -> tuple:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _group_room(upper: list[str], lower: list[str], group: dict, depth_of: dict) -> float:
    """Return the extra gap between two layers: room for group boxes ending above and beginning below."""
    above = {g for v in upper for g in group.get(v, ())}
    below = {g for v in lower for g in group.get(v, ())}
    ending = [g for g in above if g not in below]
    beginning = [g for g in below if g not in above]
    room = 0.0
    if ending:
        room += GROUP_PAD * max((depth_of[v] for v in upper), default=0)
    if beginning:
        room += (GROUP_PAD + LABEL_ROOM) * max((depth_of[v] for v in lower), default=0)
    return room


def _group_boxes(layers, pos, left_ext, right_ext, group, bands) -> dict:
    """Return each group's rectangle (x0, y0, x1, y1, depth) around its members' rows."""
    spans: dict[str, list[float]] = {}
    depth: dict[str, int] = {}
    inner: dict[str, int] = {}
    for layer, (top, bottom) in zip(layers, bands):
        for v in layer:
            g = group.get(v, ())
            for k, gid in enumerate(g):
                depth[gid] = k
                inner[gid] = max(inner.get(gid, 0), len(g) - k - 1)
                lo, hi = pos[v][0] - left_ext[v], pos[v][0] + right_ext[v]
                s = spans.setdefault(gid, [lo, top, hi, bottom])
                s[0], s[1], s[2], s[3] = min(s[0], lo), min(s[1], top), max(s[2], hi), max(s[3], bottom)
    boxes = {}
    for gid, (x0, y0, x1, y1) in spans.items():
        pad = GROUP_PAD * (inner[gid] + 1)
        boxes[gid] = (x0 - pad, y0 - pad - LABEL_ROOM * (inner[gid] + 1) + GROUP_PAD * inner[gid], x1 + pad,
                      y1 + pad, depth[gid])
    return boxes
