"""runtime: executes a `Plan` on NumPy arrays.

In: a `Plan` and feeds. Out: values of every node, gradients of the objective
(the executor, feed validation, the NaN guard).
"""
