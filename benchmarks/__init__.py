"""Benchmarks behind DESIGN.md's targets; each writes its own section of docs/benchmarks.md."""
