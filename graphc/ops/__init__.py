"""The ops: the registry (registry.py), attribute handling (attrs.py) and the op families.

Importing this package registers every op: each family module (gates, reduce,
shape, slicing, layers, pooling, activations, norm, losses, regularize) calls
`registry.register` for its ops at import. This module re-exports the
registry's and attrs' public names, so callers write `from graphc.ops import lookup`.
See registry.py for the kernel contract an op's forward and backward follow.
"""
from __future__ import annotations

from graphc.ops import activations, gates, layers, losses, norm, pooling, reduce, regularize, shape, slicing  # noqa: F401
from graphc.ops.attrs import AttrError, literal, resolve_attrs
from graphc.ops.registry import (
    ATTR_KINDS,
    DOMAINS,
    FAMILIES,
    LAYOUTS,
    REQUIRED,
    SAVES,
    Attr,
    Ctx,
    OpDef,
    ParamSpec,
    Sample,
    StateSpec,
    all_names,
    all_ops,
    find,
    lookup,
    register,
)

__all__ = ["ATTR_KINDS", "DOMAINS", "FAMILIES", "LAYOUTS", "REQUIRED", "SAVES", "Attr", "AttrError", "Ctx",
           "OpDef", "ParamSpec", "Sample", "StateSpec", "all_names", "all_ops", "find", "literal", "lookup",
           "register", "resolve_attrs"]
