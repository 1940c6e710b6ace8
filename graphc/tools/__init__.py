"""tools: leaves over the pipeline (summary, emit, bench, inspect, gradcheck).

Nothing in the pipeline imports them; they may import every stage and viz.
"""
