"""`python -m shiftwatch ...` runs the CLI (the same as the `shiftwatch` script)."""

from shiftwatch.cli import app

app()
