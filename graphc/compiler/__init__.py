"""compiler: syntax tree -> typed graph -> scheduled plan.

In: `syntax.Module`. Out: `Graph` (Node records with their OpDef, shapes and
FLOPs from the op registry) and `Plan` (forward/backward steps, buffers).
Knows the op registry's records; never runs a kernel.
"""
