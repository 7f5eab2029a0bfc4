"""docs/benchmarks.md's and docs/scaling.md's generated sections, one module per benchmark,
rendered from what the benchmark measured (benchmarks/results.py); nothing here measures.

`markdown` holds what every section shares: tables, verdicts against targets, the load line,
project-relative paths, and writing a section into its document.
"""
