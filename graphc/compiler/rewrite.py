"""Rewrite: a typed graph -> an equivalent graph that is cheaper to run, and the list of rewrites applied.

Input: a typed Graph and the nodes a plan must keep (their values are read
back). Output: a new Graph (the input graph is never changed; untouched
Node records are shared) and a `Rewrite` per change, which
`graphc compile --emit plan` prints as "rewrite: <what> (<why>)". Every
rewrite gives the same values of the kept nodes and the same gradients of
the parameters (tests/test_rewrites.py checks each against the unrewritten
graph); the values of nodes it removes are no longer computed.

  relu after maxpool   maxpool(relu(x)) -> relu(maxpool(x)): the two commute
                       exactly (relu is monotone; ties and the gradient at 0
                       come out the same), and relu then runs on the pooled
                       tensor: 4x fewer elements for 2x2 windows, a 4x smaller
                       saved output for its backward mask.
  unused outputs       (plan level, see `plan_rewrites`) a training step plans
                       only the objective: `output probs = softmax(logits)` is
                       not computed when nothing reads it.

Considered and not done (measured, see bench/README.md): fusing conv + bias +
relu. The bias is already a row of the conv's GEMM (ops/conv_fast.py), and relu
already runs in place in the conv's output buffer (plan.py's `inplace`), so a
fused kernel would save one call per layer and nothing else; after the relu
moves past the maxpool, LeNet-5 and SimpleConvNet have no conv -> relu left.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from graphc.compiler.graph import Graph, Node


@dataclass(frozen=True)
class Rewrite:
    """One change a rewrite made: what (naming the nodes) and why it pays."""

    what: str
    why: str

    def line(self) -> str:
        """Return the "rewrite: <what> (<why>)" line of the plan text."""
        return f"rewrite: {self.what} ({self.why})"


def rewrite(graph: Graph, keep: set[str]) -> tuple[Graph, list[Rewrite]]:
    """Return (the rewritten graph, the rewrites applied); the graph itself when nothing applies."""
    done: list[Rewrite] = []
    current = graph
    for name in graph.op_nodes():
        swapped = _relu_after_maxpool(current, name, keep)
        if swapped is not None:
            current, change = swapped
            done.append(change)
    return current, done


def _relu_after_maxpool(graph: Graph, pool_name: str, keep: set[str]) -> tuple[Graph, Rewrite] | None:
    """Return (graph with relu moved after the maxpool `pool_name`, the Rewrite) or None when it does not apply.

    Applies when the maxpool's input is a relu that nothing else reads and that
    no caller wants back. The relu node disappears; the maxpool moves to a new
    node `<pool>.pool` and the node `<pool>` becomes relu(<pool>.pool), so every
    reader of `<pool>` is unchanged.
    """
    if pool_name not in graph.nx:
        return None
    pool = graph.node(pool_name)
    if pool.kind != "op" or pool.op.name != "maxpool" or len(pool.inputs) != 1:
        return None
    relu_name = pool.inputs[0]
    relu = graph.node(relu_name)
    moved_name = f"{pool_name}.pool"
    G = graph.nx
    if (relu.kind != "op" or relu.op.name != "relu" or relu_name in keep or moved_name in G
            or list(G.successors(relu_name)) != [pool_name] or relu_name in graph.outputs.values()
            or relu_name == graph.loss):
        return None
    source = relu.inputs[0]
    moved = Node(moved_name, "op", op=pool.op, inputs=(source,), attrs=pool.attrs, span=pool.span,
                 trace=pool.trace, block=pool.block, arg_spans=pool.arg_spans, type=pool.type, flops=pool.flops)
    # relu's work scales with its elements: per sample, the pooled size.
    per_element = relu.flops / max(relu.type.size, 1)
    activated = Node(pool_name, "op", op=relu.op, inputs=(moved_name,), attrs=relu.attrs, span=relu.span,
                     trace=relu.trace, block=relu.block, arg_spans=relu.arg_spans, type=pool.type,
                     flops=int(per_element * pool.type.size))
    H = G.copy()
    H.remove_node(relu_name)
    H.remove_node(pool_name)
    H.add_node(moved_name, node=moved)
    H.add_node(pool_name, node=activated)
    H.add_edge(source, moved_name, slots=[0], type=relu.type)
    H.add_edge(moved_name, pool_name, slots=[0], type=pool.type)
    for reader in G.successors(pool_name):
        H.add_edge(pool_name, reader, **G.edges[pool_name, reader])
    rewritten = replace(graph, nx=H, _order=None)
    return rewritten, Rewrite(f"relu after maxpool: {pool_name} = relu(maxpool({source})) instead of "
                              f"maxpool(relu({source})); `{relu_name}` is no longer computed",
                              "they commute exactly; relu and its backward mask run on the pooled tensor, "
                              f"{relu.type.size / max(pool.type.size, 1):.0f}x fewer elements")


def unused_outputs_rewrite(graph: Graph, dropped: list[str]) -> Rewrite | None:
    """Return the Rewrite that records outputs a training plan leaves out (None when there are none)."""
    if not dropped:
        return None
    names = ", ".join(f"`{n}`" for n in dropped)
    return Rewrite(f"outputs not computed in training steps: {names}",
                   "the objective does not need them; the trainer counts accuracy on the loss's own inputs")
