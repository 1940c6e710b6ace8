"""Builder: the walker over a model's statements that adds its nodes to the Graph.

Input: one model's syntax (and the blocks it uses). Output: nodes and edges
added to the Graph, one per input, label, param, constant and op call; errors
recorded in the caller's Diagnostics (each at most once, with notes naming the
block call sites that led to it). Constants (shapes, attributes, `repeat`
counts, `init=`) follow compiler/evaluate.py, which `Builder` extends with the
values that need nodes: op calls (`apply` = bind the arguments, then create the
node) and block uses (`expand`).
"""
from __future__ import annotations

import math

from graphc.compiler.evaluate import Evaluator
from graphc.compiler.graph import Node, ParamInfo
from graphc.compiler.scope import (
    POISON,
    Const,
    Scope,
    StatementNames,
    Symbol,
    Tensor,
    nodes_at_least,
    span_of,
)
from graphc.diagnostics import Note, did_you_mean
from graphc.language import syntax as S
from graphc.ops import AttrError, OpDef, all_names, find, literal, lookup, resolve_attrs
from graphc.ops.init import check_initialiser
from graphc.ops.registry import WRITTEN_OTHERWISE
from graphc.tensor_type import CLASS, MAX_ELEMENTS, MAX_RANK, TensorType, format_shape

MAX_REPEAT = 10_000   # copies one `repeat` may make
MAX_BLOCK_DEPTH = 50  # blocks using blocks: each level costs stack frames while building
# Nodes one model may have: blocks using a block twice per level double the model each level; 50,000
# keeps every accepted model under ~5 s of checking (65,536 doubled nodes took 5.7 s), far above real nets.
MAX_NODES = 50_000


class Builder(Evaluator):
    """Adds one model's nodes to `graph`, inlining the `blocks` it uses."""

    def __init__(self, graph, blocks, diagnostics):
        super().__init__(diagnostics)
        self.graph, self.blocks = graph, blocks
        self.taken: set[str] = set()
        self.block_nodes: dict[str, int] = {}   # nodes_at_least, memoised per block

    def unique(self, name: str) -> str:
        """Return `name`, or `name_2`, `name_3`, ... if it is taken; and take it."""
        candidate, k = name, 1
        while candidate in self.taken:
            k += 1
            candidate = f"{name}_{k}"
        self.taken.add(candidate)
        return candidate

    # ---- model and bodies --------------------------------------------------------
    def model(self, model: S.Model, *, needs_inputs: bool = True) -> None:
        """Build a model's body, then check its interface (inputs unless `needs_inputs` is False: `data = none`)."""
        scope = Scope("", {}, (), "", ())
        self.body(model.body, scope, in_block=False)
        g = self.graph
        if needs_inputs and not g.inputs and not self.diagnostics.has_errors:
            self.error(f"model `{model.name}` has no inputs", model.name_span,
                       help="declare the data it reads, e.g. `input x: [784]`")

    def body(self, body, scope: Scope, *, in_block: bool, return_prefix: str = "",
             value_name: str = ""):
        """Build a list of statements; return the value of a block's `return` (or None)."""
        for index, stmt in enumerate(body):
            name = getattr(stmt, "name", None)
            if name is None:
                continue
            if name in scope.defined:
                first = scope.defined[name][1]
                self.error(f"`{name}` is defined twice", stmt.name_span, scope,
                           help="give the second definition another name",
                           notes=[Note("first defined", first)])
                continue
            scope.defined[name] = (index, stmt.name_span)
            value = getattr(stmt, "value", None)
            scope.refs.values[name] = value
        returned = None
        for index, stmt in enumerate(body):
            scope.current = index
            if returned is not None:
                self.error("statement after `return`", stmt.span, scope,
                           help="`return` must be the last statement of a block")
                break
            if isinstance(stmt, S.Return):
                if not in_block:
                    self.error("`return` outside a block", stmt.span,
                               help="a model names its results with `output NAME = ...`")
                    continue
                names = StatementNames(self.blocks, return_prefix, value_name, stmt.value)
                returned = self.expr(stmt.value, scope, names)
                continue
            self.statement(stmt, scope, in_block)
        if in_block and returned is None:
            return POISON
        return returned

    def statement(self, stmt, scope: Scope, in_block: bool) -> None:
        """Build one declaration or assignment and bind its name."""
        g, full = self.graph, scope.prefix + stmt.name
        if scope.defined.get(stmt.name, (None,))[0] != scope.current:
            return  # a duplicate, already reported
        if isinstance(stmt, (S.InputDecl, S.LabelDecl)):
            if in_block:
                self.error(f"`{'input' if isinstance(stmt, S.InputDecl) else 'label'}` inside a block",
                           stmt.span, scope, help="pass tensors to a block as its arguments")
                scope.env[stmt.name] = POISON
                return
            declared = self.declared_type(stmt, scope)
            if declared is None:
                scope.env[stmt.name] = POISON
                return
            kind = "input" if isinstance(stmt, S.InputDecl) else "label"
            node = self.unique(full)
            g.add(Node(node, kind, span=stmt.span, trace=scope.trace, block=scope.block, declared=declared))
            (g.inputs if kind == "input" else g.labels).append(node)
            g.definitions.append((node, kind, stmt.name_span))
            scope.env[stmt.name] = Tensor(node)
            return
        if isinstance(stmt, S.ParamDecl):
            self.param_decl(stmt, scope, full)
            return
        names = StatementNames(self.blocks, full, full, stmt.value)
        value = self.expr(stmt.value, scope, names)
        if isinstance(value, Symbol):
            # A bare word bound to nothing (`h = foo`): only an attribute may be a bare word,
            # so naming it in a statement is an undefined name, even if `h` is never used.
            self.undefined(value, scope)
            value = POISON
        scope.env[stmt.name] = value
        if isinstance(stmt, S.OutputDecl) or (stmt.name == "loss" and not in_block):
            if not isinstance(value, Tensor):
                if value is not POISON:
                    self.error(f"`{stmt.name}` must be a tensor, not a constant", span_of(stmt.value), scope,
                               help=f"compute `{stmt.name}` from the model's inputs and parameters")
                return
            if isinstance(stmt, S.OutputDecl):
                if in_block:
                    self.error("`output` inside a block", stmt.span, scope,
                               help="a block gives its result with `return`; name outputs in the model")
                    return
                g.outputs[stmt.name] = value.node
            if stmt.name == "loss" and not in_block:
                g.loss, g.loss_span = value.node, stmt.span
        elif isinstance(value, Tensor) and value.node == full:
            g.definitions.append((full, "definition", stmt.name_span))

    def declared_type(self, stmt, scope) -> TensorType | None:
        """Return the type an input or label declaration writes, or None after an error."""
        if isinstance(stmt, S.LabelDecl) and stmt.classes is not None:
            k = self.constant(stmt.classes, scope)
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                if k is not None:
                    self.error("the number of classes must be a whole number >= 1", stmt.classes.span, scope)
                return None
            return TensorType((), CLASS, True, k)
        shape = self.shape(stmt.shape, scope)
        return None if shape is None else TensorType(shape)

    def shape(self, shape: S.ShapeExpr, scope) -> tuple[int, ...] | None:
        """Return the dimensions of a written shape, or None after an error."""
        dims = []
        for d in shape.dims:
            v = self.constant(d, scope)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                self.error(f"a dimension must be a whole number >= 1, got {v!r}", span_of(d), scope,
                           help="a shape lists sizes per sample, e.g. [1, 28, 28]; `[]` is a scalar")
                return None
            dims.append(v)
        if len(dims) > MAX_RANK:
            self.error(f"a shape with {len(dims)} axes has too many (the limit is {MAX_RANK})", shape.span, scope,
                       help="NumPy arrays hold at most 64 axes; flatten some")
            return None
        if math.prod(dims) > MAX_ELEMENTS:
            self.error(f"a tensor of shape {format_shape(tuple(dims))} is too large", shape.span, scope,
                       help=f"graphc's limit is {MAX_ELEMENTS:,} elements per tensor")
            return None
        return tuple(dims)

    def param_decl(self, stmt: S.ParamDecl, scope, full) -> None:
        """Create a `param` node with its ParamInfo; `init=` is checked with the initialisers' signatures."""
        shape = self.shape(stmt.shape, scope)
        init, init_args, decay = "he", {}, None
        given_init = False
        for option in stmt.options:
            if option.name == "init":
                resolved = self.named_call(option.value, scope, "initialiser", check_initialiser)
                if resolved is not None:
                    init, init_args = resolved
                given_init = True
            elif option.name == "decay":
                v = self.constant(option.value, scope)
                if not isinstance(v, bool):
                    self.error("`decay` must be true or false", span_of(option.value), scope)
                else:
                    decay = v
            else:
                self.error(f"`param` has no option `{option.name}`", option.name_span, scope,
                           help="options are `init=` and `decay=`")
        if shape is None:
            scope.env[stmt.name] = POISON
            return
        node = self.unique(full)
        fan_in = shape[0] if shape else 1
        fan_out = shape[-1] if shape else 1
        weight = len(shape) >= 2
        if decay is None:
            decay = weight     # like layers: weights are decayed, biases and scalars are not
        if not given_init and not weight:
            init, given_init = "zeros", True   # a bias-like vector starts at zero, as a layer's bias does
        self.graph.add(Node(node, "param", span=stmt.span, trace=scope.trace, block=scope.block,
                            declared=TensorType(shape, batched=False)))
        self.graph.params[node] = ParamInfo(node, shape, init, init_args, (fan_in, fan_out), decay,
                                            not given_init, node, None, stmt.span)
        self.graph.definitions.append((node, "parameter", stmt.name_span))
        scope.env[stmt.name] = Tensor(node)

    # ---- values that need nodes ---------------------------------------------------
    def repeat(self, link: S.Repeat, piped, piped_span, scope, names):
        """Return the value of `piped -> repeat N f(...)`: N copies of the call, chained."""
        count = self.constant(link.count, scope)
        if count is None:
            return POISON
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            self.error(f"`repeat` needs a whole number >= 1, got {count!r}", span_of(link.count), scope,
                       help=f"write the number of copies, e.g. `repeat 3 {link.call.func}`")
            return POISON
        if count > MAX_REPEAT:
            # Each copy is built node by node; a huge count would hang the checker, not fail.
            self.error(f"`repeat {count}` makes too many copies (at most {MAX_REPEAT:,})", span_of(link.count),
                       scope, help="stack fewer copies")
            return POISON
        block = self.blocks.get(link.call.func)
        self.within_budget(count * (nodes_at_least(block, self.blocks, self.block_nodes) if block else 1),
                           link.span, scope)
        value = piped
        for i in range(count):
            value = self.call(link.call, scope, names, (value, piped_span), rep=(link, i, i == count - 1))
        return value

    def call(self, call: S.Call, scope, names, piped, rep=None):
        """Return the value of a call to an op or a block (piped: the value on the left of `->`)."""
        args = [piped] if piped is not None else []
        args += [(self.expr(a, scope, names), span_of(a)) for a in call.args]
        keywords = [(k, self.expr(k.value, scope, names)) for k in call.keywords]
        if call.func in self.blocks:
            return self.expand(self.blocks[call.func], call, args, keywords, scope, names, rep)
        op = find(call.func)
        if op is None:
            self.error(f"unknown op `{call.func}`", call.func_span, scope,
                       help=WRITTEN_OTHERWISE.get(call.func) or did_you_mean(call.func, [*all_names(), *self.blocks])
                       or "see `graphc ops` for the list of ops")
            return POISON
        return self.apply(call, op.name, args, keywords, scope, names, rep, op)

    def apply(self, syntax, op_name, args, keywords, scope, names, rep=None, op=None):
        """Create the node of an op call; return its Tensor (or POISON). `op`: the OpDef, if looked up."""
        if op is None:
            op = lookup(op_name)
        bound = self.bind_arguments(syntax, op, args, keywords, scope)
        if bound is None:
            return POISON
        if names is None:
            self.error(f"`{op.name}` cannot be used here: a constant is expected", syntax.span, scope)
            return POISON
        inputs, attrs, arg_spans = bound
        return self.create_node(syntax, op, inputs, attrs, arg_spans, scope, names, rep)

    # ---- binding arguments -------------------------------------------------------
    def bind_arguments(self, syntax, op: OpDef, args, keywords, scope):
        """Return (inputs by slot, resolved attributes, spans by slot or attribute) of an op call,
        or None after an error: arguments fill the inputs, then the attributes, in order."""
        placed = self._place(syntax, op, args, keywords, scope)
        if placed is None:
            return None
        inputs, attr_values, arg_spans = placed
        if any(v is POISON for v in [*inputs.values(), *attr_values.values()]):
            return None
        plain = {}
        for name, value in attr_values.items():
            if isinstance(value, Tensor):
                self.error(f"`{name}` of `{op.name}` must be a constant, not a tensor", arg_spans[name], scope,
                           help=f"`{name}` is fixed when the model is compiled; write a number")
                return None
            plain[name] = value.name if isinstance(value, Symbol) else value.value
        try:
            attrs = resolve_attrs(op, plain)
        except AttrError as error:
            self.error(error.message, arg_spans.get(error.name, getattr(syntax, "func_span", syntax.span)), scope,
                       help=error.help or _signature(op))
            return None
        return inputs, attrs, arg_spans

    def _place(self, syntax, op: OpDef, args, keywords, scope):
        """Return (input values by slot, attribute values by name, spans), or None after an error."""
        inputs, attr_values, arg_spans = {}, {}, {}
        n_inputs = len(args) if op.variadic else len(op.inputs)
        if not op.variadic and len(args) > len(op.inputs) + len(op.attrs):
            self.error(f"`{op.name}` takes at most {len(op.inputs) + len(op.attrs)} arguments, "
                       f"got {len(args)}", syntax.span, scope, help=_signature(op))
            return None
        for i, (value, arg_span) in enumerate(args):
            slot = i if i < n_inputs else op.attrs[i - n_inputs].name
            (inputs if i < n_inputs else attr_values)[slot] = value
            arg_spans[slot] = arg_span
        for keyword, value in keywords:
            is_input = keyword.name in op.inputs and not op.variadic
            if not is_input and op.attr(keyword.name) is None:
                self.error(f"`{op.name}` has no argument `{keyword.name}`", keyword.name_span, scope,
                           help=did_you_mean(keyword.name, [*op.inputs, *(a.name for a in op.attrs)])
                           or _signature(op))
                return None
            slot = op.inputs.index(keyword.name) if is_input else keyword.name
            target = inputs if is_input else attr_values
            if slot in target:
                self.error(f"`{keyword.name}` is given twice", keyword.span, scope)
                return None
            target[slot] = value
            arg_spans[slot] = span_of(keyword.value) or keyword.span
        if any(i not in inputs for i in range(len(op.inputs))) or (op.variadic and not inputs):
            self.error(f"`{op.name}` needs {len(op.inputs)} tensor input{'s' * (len(op.inputs) > 1)} "
                       f"({', '.join(op.inputs)}), got {len(inputs)}", syntax.span, scope, help=_signature(op))
            return None
        return inputs, attr_values, arg_spans

    # ---- creating nodes ----------------------------------------------------------
    def create_node(self, syntax, op: OpDef, inputs: dict, attrs: dict, arg_spans: dict, scope, names, rep):
        """Add the op's node (and a const node per number input) with its edges; return its Tensor or POISON."""
        rep_index, last = (rep[1], rep[2]) if rep else (None, True)
        key = rep[0] if rep else syntax
        node = self.unique(names.node_name(key, rep_index, last))
        input_nodes = []
        for i in sorted(inputs):
            source = self._input_node(inputs[i], f"{node}.{op.inputs[min(i, len(op.inputs) - 1)]}",
                                      arg_spans[i], scope)
            if source is None:
                return POISON
            input_nodes.append(source)
        params = {}
        if op.params:
            owner = names.owner(key, rep_index, last)
            params = {p.role: self.unique(f"{owner}.{p.role}") for p in op.active_params(attrs)}
        graph = self.graph
        self.within_budget(1, syntax.span, scope)
        graph.add(Node(node, "op", op=op, inputs=tuple(input_nodes), attrs=attrs, span=syntax.span,
                       trace=scope.trace, block=scope.block, params=params, arg_spans=arg_spans))
        # One edge per distinct input, listing the input slots it feeds (the node is new: no edges yet).
        slots: dict[str, list[int]] = {}
        for slot, src in enumerate(input_nodes):
            slots.setdefault(src, []).append(slot)
        for src, feeds in slots.items():
            graph.nx.add_edge(src, node, slots=feeds)
        return Tensor(node)

    def within_budget(self, adding: int, span, scope) -> None:
        """Return None when `adding` more nodes stay within MAX_NODES; else record the error and raise it."""
        if self.graph.nx.number_of_nodes() + adding > MAX_NODES:
            self.error(f"the model would grow past {MAX_NODES:,} nodes, graphc's limit", span, scope,
                       help="a block that uses a block twice doubles the model at each level; "
                            "use fewer levels or copies")
            self.diagnostics.raise_if_errors()   # stop now: building on would take minutes

    def _input_node(self, value, const_name: str, span, scope) -> str | None:
        """Return the node an input reads: a tensor's node, or a new const node for a number."""
        if type(value) is Tensor:
            return value.node
        if isinstance(value, Symbol):
            self.undefined(value, scope)
            return None
        if isinstance(value, Const):
            if isinstance(value.value, bool) or not isinstance(value.value, (int, float)):
                self.error(f"expected a tensor or a number, got {value.value!r}", span, scope)
                return None
            const = self.unique(const_name)
            self.graph.add(Node(const, "const", span=span, trace=scope.trace, block=scope.block,
                                declared=TensorType((), batched=False), value=value.value))
            return const
        return value.node

    def expand(self, block: S.Block, call: S.Call, args, keywords, scope, names, rep):
        """Inline one use of a block; return the value of its `return`."""
        if block.name in scope.stack:
            chain = " -> ".join([*scope.stack[scope.stack.index(block.name):], block.name])
            self.error(f"block `{block.name}` uses itself ({chain})", call.span, scope,
                       help="blocks cannot be recursive; use `repeat N` to stack copies")
            return POISON
        if len(scope.stack) >= MAX_BLOCK_DEPTH:
            self.error(f"blocks nested more than {MAX_BLOCK_DEPTH} deep", call.span, scope,
                       help="flatten the chain of blocks that use blocks")
            return POISON
        self.within_budget(nodes_at_least(block, self.blocks, self.block_nodes), call.span, scope)
        formal = [p.name for p in block.params]
        if len(args) > len(formal):
            self.error(f"block `{block.name}` takes {len(formal)} arguments ({', '.join(formal)}), "
                       f"got {len(args)}", call.span, scope)
            return POISON
        bound = {formal[i]: value for i, (value, _) in enumerate(args)}
        for keyword, value in keywords:
            if keyword.name not in formal:
                self.error(f"block `{block.name}` has no argument `{keyword.name}`", keyword.name_span, scope,
                           help=did_you_mean(keyword.name, formal) or f"its arguments: {', '.join(formal)}")
                return POISON
            if keyword.name in bound:
                self.error(f"`{keyword.name}` is given twice", keyword.span, scope)
                return POISON
            bound[keyword.name] = value
        rep_index, last = (rep[1], rep[2]) if rep else (None, True)
        key = rep[0] if rep else call
        if names is None:
            self.error(f"block `{block.name}` cannot be used here: a constant is expected", call.span, scope)
            return POISON
        owner = names.owner(key, rep_index, last)
        inner = Scope(owner + ".", {}, ((block.name, call.span), *scope.trace), owner,
                       (*scope.stack, block.name))
        for p in block.params:
            if p.name in bound:
                inner.env[p.name] = bound[p.name]
            elif p.default is not None:
                inner.env[p.name] = self.expr(p.default, inner, None)
            else:
                self.error(f"block `{block.name}` needs the argument `{p.name}`", call.span, scope,
                           help=f"its arguments: {', '.join(formal)}")
                return POISON
        if any(v is POISON for v in inner.env.values()):
            return POISON
        value = self.body(block.body, inner, in_block=True, return_prefix=owner,
                          value_name=names.node_name(key, rep_index, last))
        if value is POISON and not any(isinstance(s, S.Return) for s in block.body):
            self.error(f"block `{block.name}` has no `return`", block.name_span, scope,
                       help="end the block with `return <expression>`",
                       notes=[Note(f"block `{block.name}` used here", call.span)])
        return value


def _signature(op: OpDef) -> str:
    """Return the usage line of an op: `usage: conv(x, filters, kernel=[3, 3], ...)`."""
    parts = list(op.inputs) + (["..."] if op.variadic else [])
    for a in op.attrs:
        parts.append(a.name if a.required else f"{a.name}={literal(a.default)}")
    return f"usage: {op.name}({', '.join(parts)})"
