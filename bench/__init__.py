"""Benchmarks and timing probes, run from the repository root as modules: `python -m bench.compare`, `python -m bench.timings`."""
