"""Build, continued: the walker over statements and expressions.

Input: one model's syntax (and the blocks it uses). Output: nodes and edges
added to the Graph, one per input, label, param, constant and op call; errors
recorded in the caller's Diagnostics (each at most once, with notes naming the
block call sites that led to it).
"""
from __future__ import annotations

import math

from graphc.compiler.build import (
    _RESERVED,
    OPERATORS,
    POISON,
    Const,
    Symbol,
    Tensor,
    _did_you_mean,
    _Scope,
    _StatementNames,
)
from graphc.compiler.graph import ParamInfo
from graphc.diagnostics import Diagnostic, Note
from graphc.language import syntax as S
from graphc.ops import AttrError, OpDef, all_names, lookup, resolve_attrs
from graphc.tensor_type import CLASS, MAX_ELEMENTS, TensorType, format_shape
from graphc.training.settings import resolve_init

MAX_REPEAT = 10_000   # copies one `repeat` may make
MAX_BLOCK_DEPTH = 50  # blocks using blocks: each level costs stack frames while building


class _Builder:
    def __init__(self, graph, blocks, diagnostics):
        self.graph, self.blocks, self.diagnostics = graph, blocks, diagnostics
        self.taken: set[str] = set()
        self._reported: set = set()
        self._warned: set = set()
        self.defined_nodes: list[tuple[str, str, object]] = []  # (node, kind, span) for unused warnings

    # ---- diagnostics -----------------------------------------------------------
    def error(self, message, span, scope=None, help=None, notes=()):
        """Record an error once, with notes for the block call sites in `scope`."""
        notes = tuple(notes) + (self._trace_notes(scope) if scope is not None else ())
        key = (message, span.start if span else None, span.source.path if span else None)
        if key in self._reported:
            return
        self._reported.add(key)
        self.diagnostics.add(Diagnostic("error", message, span, help, notes))

    def warning(self, message, span, help=None):
        key = (message, span.start if span else None)
        if key not in self._warned:
            self._warned.add(key)
            self.graph.warnings.append(Diagnostic("warning", message, span, help))

    @staticmethod
    def _trace_notes(scope) -> tuple:
        return tuple(Note(f"in block `{b}` used here", s) for b, s in scope.trace)

    def unique(self, name: str) -> str:
        """Return `name`, or `name_2`, `name_3`, ... if it is taken; and take it."""
        candidate, k = name, 1
        while candidate in self.taken:
            k += 1
            candidate = f"{name}_{k}"
        self.taken.add(candidate)
        return candidate

    # ---- model and bodies --------------------------------------------------------
    def model(self, model: S.Model) -> None:
        """Build the nodes of a model's body, then check its interface."""
        scope = _Scope("", {}, (), "", ())
        self.body(model.body, scope, in_block=False)
        g = self.graph
        if not g.inputs and not self.diagnostics.has_errors:
            self.error(f"model `{model.name}` has no inputs", model.name_span,
                       help="declare the data it reads, e.g. `input x: [784]`")
        used_outputs = set(g.outputs.values()) | ({g.loss} if g.loss else set())
        for node, what, span in self.defined_nodes:
            if node in g.nx and g.nx.out_degree(node) == 0 and node not in used_outputs:
                self.warning(f"{what} `{node}` is never used", span,
                             help="use it, make it an `output`, or delete it")

    def body(self, body, scope: _Scope, *, in_block: bool, return_prefix: str = "",
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
                names = _StatementNames(self, return_prefix, value_name, stmt.value)
                returned = self.expr(stmt.value, scope, names)
                continue
            self.statement(stmt, scope, in_block)
        if in_block and returned is None:
            return POISON
        return returned

    def statement(self, stmt, scope: _Scope, in_block: bool) -> None:
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
            g.nx.add_node(node, kind=kind, op=None, inputs=[], attrs={}, span=stmt.span, trace=scope.trace,
                          block=scope.block, params={}, declared=declared)
            (g.inputs if kind == "input" else g.labels).append(node)
            self.defined_nodes.append((node, kind, stmt.name_span))
            scope.env[stmt.name] = Tensor(node)
            return
        if isinstance(stmt, S.ParamDecl):
            self.param_decl(stmt, scope, full)
            return
        names = _StatementNames(self, full, full, stmt.value)
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
                    self.error(f"`{stmt.name}` must be a tensor, not a constant", _span(stmt.value), scope,
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
            self.defined_nodes.append((full, "definition", stmt.name_span))

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
                self.error(f"a dimension must be a whole number >= 1, got {v!r}", _span(d), scope,
                           help="a shape lists sizes per sample, e.g. [1, 28, 28]; `[]` is a scalar")
                return None
            dims.append(v)
        if math.prod(dims) > MAX_ELEMENTS:
            self.error(f"a tensor of shape {format_shape(tuple(dims))} is too large", shape.span, scope,
                       help=f"graphc's limit is {MAX_ELEMENTS:,} elements per tensor")
            return None
        return tuple(dims)

    def constant(self, expr, scope):
        """Return the compile-time value of expr, or None (with an error) if it is not one."""
        value = self.expr(expr, scope, None)
        if isinstance(value, Const) and value is not POISON:
            return value.value
        if isinstance(value, Tensor):
            self.error("expected a number here, got a tensor", _span(expr), scope)
        elif isinstance(value, Symbol):
            self.undefined(value, scope)
        return None

    def param_decl(self, stmt: S.ParamDecl, scope, full) -> None:
        shape = self.shape(stmt.shape, scope)
        init, init_args, decay = "he", {}, None
        given_init = False
        for option in stmt.options:
            if option.name == "init":
                resolved = resolve_init(option.value, self.diagnostics, lambda e: self.expr(e, scope, None))
                if resolved is not None:
                    init, init_args = resolved
                given_init = True
            elif option.name == "decay":
                v = self.constant(option.value, scope)
                if not isinstance(v, bool):
                    self.error("`decay` must be true or false", _span(option.value), scope)
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
        self.graph.nx.add_node(node, kind="param", op=None, inputs=[], attrs={}, span=stmt.span,
                               trace=scope.trace, block=scope.block, params={},
                               declared=TensorType(shape, batched=False))
        self.graph.params[node] = ParamInfo(node, shape, init, init_args, (fan_in, fan_out), decay,
                                            not given_init, node, None, stmt.span)
        self.defined_nodes.append((node, "parameter", stmt.name_span))
        scope.env[stmt.name] = Tensor(node)

    # ---- expressions -------------------------------------------------------------
    def expr(self, e, scope: _Scope, names: _StatementNames | None):
        """Return the value of an expression: Tensor, Const, Symbol or POISON."""
        if isinstance(e, S.Number):
            return Const(e.value, e.span)
        if isinstance(e, S.String):
            return Const(e.value, e.span)
        if isinstance(e, S.Name):
            return self.name(e, scope)
        if isinstance(e, S.ListExpr):
            items = [self.expr(i, scope, names) for i in e.items]
            if any(v is POISON for v in items):
                return POISON
            if any(not isinstance(v, Const) for v in items):
                self.error("a list holds numbers; to join tensors use concat(a, b)", e.span, scope)
                return POISON
            return Const([v.value for v in items], e.span)
        if isinstance(e, S.Negate):
            v = self.expr(e.operand, scope, names)
            if isinstance(v, Const) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
                return Const(-v.value, e.span)
            return self.apply(e, "neg", [(v, _span(e.operand))], [], scope, names)
        if isinstance(e, S.BinOp):
            left = self.expr(e.left, scope, names)
            right = self.expr(e.right, scope, names)
            if _number(left) and _number(right) and e.op != "@":
                # Arithmetic on constants is a constant, as `-k` already is, so that a block
                # can write `pad=(k - 1) / 2`; only an expression with a tensor becomes gates.
                return self.fold(e, left.value, right.value, scope)
            return self.apply(e, OPERATORS[e.op], [(left, _span(e.left)), (right, _span(e.right))], [],
                              scope, names)
        if isinstance(e, S.Call):
            return self.call(e, scope, names, None)
        if isinstance(e, S.Chain):
            value = self.expr(e.head, scope, names)
            head_span = _span(e.head)
            for link in e.links:
                if isinstance(link, S.Repeat):
                    value = self.repeat(link, value, head_span, scope, names)
                else:
                    value = self.call(link, scope, names, (value, head_span))
                head_span = head_span.to(link.span)
            return value
        raise TypeError(f"unknown syntax node {type(e).__name__}")

    def fold(self, e: S.BinOp, a, b, scope: _Scope):
        """Return the Const value of `a <op> b` for two numbers, or POISON after an error."""
        whole = isinstance(a, int) and isinstance(b, int)
        try:
            if e.op == "**" and whole and b >= 0 and (abs(a) < 2 or b * math.log2(abs(a)) <= 256):
                value = a ** b
            elif e.op == "**":
                value = float(a) ** float(b)    # floats: `10 ** 10 ** 10` must not build a huge int
                if isinstance(value, complex):
                    raise ValueError("a negative number to a fractional power")
            elif e.op == "/":
                # Whole numbers that divide evenly stay whole, so `[k / 2]` is a valid dimension.
                value = a // b if whole and b != 0 and a % b == 0 else a / b
            else:
                value = {"+": a + b, "-": a - b, "*": a * b}[e.op]
        except ZeroDivisionError:
            self.error("division by zero", e.span, scope)
            return POISON
        except OverflowError:
            self.error("cannot compute this constant: the result is too large", e.span, scope)
            return POISON
        except ValueError as error:
            self.error(f"cannot compute this constant: {error}", e.span, scope)
            return POISON
        return Const(value, e.span)

    def name(self, e: S.Name, scope: _Scope):
        if e.id in scope.env:
            return scope.env[e.id]
        if e.id in scope.defined:
            self.forward_reference(e, scope)
            return POISON
        if e.id in _RESERVED:
            return Const(_RESERVED[e.id], e.span)
        return Symbol(e.id, e.span)

    def forward_reference(self, e: S.Name, scope: _Scope) -> None:
        """Report a name used above its definition: a cycle if it leads back, else use-before-definition."""
        order = sorted(scope.defined, key=lambda n: scope.defined[n][0])
        here = next((n for n in order if scope.defined[n][0] == scope.current), None)
        path = _path(e.id, here, scope.refs) if here is not None else None
        if path is not None:
            self.error("cycle: " + " -> ".join([here, *path]), e.span, scope,
                       help="a value cannot depend on itself; the graph must be acyclic")
        else:
            line = scope.defined[e.id][1].line
            self.error(f"`{e.id}` is used before its definition on line {line}", e.span, scope,
                       help=f"move the definition of `{e.id}` above this line")

    def undefined(self, symbol: Symbol, scope: _Scope) -> None:
        tensors = [n for n, v in scope.env.items() if isinstance(v, (Tensor, Const))]
        self.error(f"undefined name `{symbol.name}`", symbol.span, scope,
                   help=_did_you_mean(symbol.name, tensors) or "define it above with `=`, "
                   "`input`, `label` or `param`")

    def repeat(self, link: S.Repeat, piped, piped_span, scope, names):
        count = self.constant(link.count, scope)
        if count is None:
            return POISON
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            self.error(f"`repeat` needs a whole number >= 1, got {count!r}", _span(link.count), scope,
                       help=f"write the number of copies, e.g. `repeat 3 {link.call.func}`")
            return POISON
        if count > MAX_REPEAT:
            # Each copy is built node by node; a huge count would hang the checker, not fail.
            self.error(f"`repeat {count}` makes too many copies (at most {MAX_REPEAT:,})", _span(link.count),
                       scope, help="stack fewer copies")
            return POISON
        value = piped
        for i in range(count):
            value = self.call(link.call, scope, names, (value, piped_span), rep=(link, i, i == count - 1))
        return value

    def call(self, call: S.Call, scope, names, piped, rep=None):
        """Return the value of a call to an op or a block (piped: the value on the left of `->`)."""
        args = [piped] if piped is not None else []
        args += [(self.expr(a, scope, names), _span(a)) for a in call.args]
        keywords = [(k, self.expr(k.value, scope, names)) for k in call.keywords]
        if call.func in self.blocks:
            return self.expand(self.blocks[call.func], call, args, keywords, scope, names, rep)
        op = lookup(call.func)
        if op is None:
            self.error(f"unknown op `{call.func}`", call.func_span, scope,
                       help=_did_you_mean(call.func, [*all_names(), *self.blocks])
                       or "see `graphc ops` for the list of ops")
            return POISON
        return self.apply(call, op.name, args, keywords, scope, names, rep, op)

    def apply(self, syntax, op_name, args, keywords, scope, names, rep=None, op=None):
        """Create the node of an op call; return its Tensor (or POISON). `op`: the OpDef, if looked up."""
        if op is None:
            op = lookup(op_name)
        span = syntax.span
        inputs, attr_values, arg_spans = {}, {}, {}
        op_inputs, op_attrs, variadic = op.inputs, op.attrs, op.variadic
        n_inputs = len(args) if variadic else len(op_inputs)
        if not variadic and len(args) > len(op_inputs) + len(op_attrs):
            self.error(f"`{op.name}` takes at most {len(op_inputs) + len(op_attrs)} arguments, "
                       f"got {len(args)}", span, scope, help=_signature(op))
            return POISON
        for i, (value, arg_span) in enumerate(args):
            if i < n_inputs:
                inputs[i] = value
                arg_spans[i] = arg_span
            else:
                name = op_attrs[i - n_inputs].name
                attr_values[name] = value
                arg_spans[name] = arg_span
        for keyword, value in keywords:
            if keyword.name in op_inputs and not variadic:
                index = op_inputs.index(keyword.name)
                if index in inputs:
                    self.error(f"`{keyword.name}` is given twice", keyword.span, scope)
                    return POISON
                inputs[index] = value
                arg_spans[index] = keyword.value.span if hasattr(keyword.value, "span") else keyword.span
            elif op.attr(keyword.name) is not None:
                if keyword.name in attr_values:
                    self.error(f"`{keyword.name}` is given twice", keyword.span, scope)
                    return POISON
                attr_values[keyword.name] = value
                arg_spans[keyword.name] = _span(keyword.value)
            else:
                self.error(f"`{op.name}` has no argument `{keyword.name}`", keyword.name_span, scope,
                           help=_did_you_mean(keyword.name, [*op_inputs, *(a.name for a in op_attrs)])
                           or _signature(op))
                return POISON
        if any(i not in inputs for i in range(len(op_inputs))) or (variadic and not inputs):
            got = len(inputs)
            self.error(f"`{op.name}` needs {len(op_inputs)} tensor input{'s' * (len(op_inputs) > 1)} "
                       f"({', '.join(op_inputs)}), got {got}", span, scope, help=_signature(op))
            return POISON
        for value in inputs.values():
            if value is POISON:
                return POISON
        plain = {}
        for value in attr_values.values():
            if value is POISON:
                return POISON
        for name, value in attr_values.items():
            if isinstance(value, Tensor):
                self.error(f"`{name}` of `{op.name}` must be a constant, not a tensor", arg_spans[name], scope,
                           help=f"`{name}` is fixed when the model is compiled; write a number")
                return POISON
            plain[name] = value.name if isinstance(value, Symbol) else value.value
        try:
            attrs = resolve_attrs(op, plain)
        except AttrError as error:
            self.error(error.message, arg_spans.get(error.name, getattr(syntax, "func_span", span)), scope,
                       help=error.help or _signature(op))
            return POISON
        rep_index, last = (rep[1], rep[2]) if rep else (None, True)
        key = rep[0] if rep else syntax
        if names is None:
            self.error(f"`{op.name}` cannot be used here: a constant is expected", span, scope)
            return POISON
        G = self.graph.nx
        node = self.unique(names.node_name(key, rep_index, last))
        input_nodes = []
        for i in sorted(inputs):
            value = inputs[i]
            if type(value) is Tensor:
                input_nodes.append(value.node)
                continue
            if isinstance(value, Symbol):
                self.undefined(value, scope)
                return POISON
            if isinstance(value, Const):
                if isinstance(value.value, bool) or not isinstance(value.value, (int, float)):
                    self.error(f"expected a tensor or a number, got {value.value!r}", arg_spans[i], scope)
                    return POISON
                const = self.unique(f"{node}.{op_inputs[min(i, len(op_inputs) - 1)]}")
                G.add_node(const, kind="const", op=None, inputs=[], attrs={}, span=arg_spans[i],
                           trace=scope.trace, block=scope.block, params={},
                           value=value.value, declared=TensorType((), batched=False))
                input_nodes.append(const)
            else:
                input_nodes.append(value.node)
        if op.params:
            owner = names.owner(key, rep_index, last)
            params = {p.role: self.unique(f"{owner}.{p.role}") for p in op.active_params(attrs)}
        else:
            params = {}
        G.add_node(node, kind="op", op=op.name, inputs=input_nodes, attrs=attrs, span=span,
                   trace=scope.trace, block=scope.block, params=params, arg_spans=arg_spans)
        # One edge per distinct input, listing the input slots it feeds (the node is new: no edges yet).
        slots: dict[str, list[int]] = {}
        for slot, src in enumerate(input_nodes):
            if src in slots:
                slots[src].append(slot)
            else:
                slots[src] = [slot]
        for src, feeds in slots.items():
            G.add_edge(src, node, slots=feeds)
        return Tensor(node)

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
        formal = [p.name for p in block.params]
        if len(args) > len(formal):
            self.error(f"block `{block.name}` takes {len(formal)} arguments ({', '.join(formal)}), "
                       f"got {len(args)}", call.span, scope)
            return POISON
        bound = {formal[i]: value for i, (value, _) in enumerate(args)}
        for keyword, value in keywords:
            if keyword.name not in formal:
                self.error(f"block `{block.name}` has no argument `{keyword.name}`", keyword.name_span, scope,
                           help=_did_you_mean(keyword.name, formal) or f"its arguments: {', '.join(formal)}")
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
        inner = _Scope(owner + ".", {}, ((block.name, call.span), *scope.trace), owner,
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


def _span(expr):
    return getattr(expr, "span", None)


def _number(value) -> bool:
    """True for a Const holding an int or float (not a bool, list or string)."""
    return isinstance(value, Const) and isinstance(value.value, (int, float)) and not isinstance(value.value, bool)


def _signature(op: OpDef) -> str:
    parts = list(op.inputs) + (["..."] if op.variadic else [])
    for a in op.attrs:
        parts.append(a.name if a.required else f"{a.name}={_show(a.default)}")
    return f"usage: {op.name}({', '.join(parts)})"


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _path(start: str, goal: str, refs: dict) -> list[str] | None:
    """Return the names leading from `start` back to `goal` through references, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        if name == goal:
            return path
        if name in seen:
            continue
        seen.add(name)
        for nxt in refs.get(name, ()):
            stack.append((nxt, path + [nxt]))
    return None
