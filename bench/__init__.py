"""Benchmarks of smits against the raw limits of its own stack; see BENCHMARKS.md."""
