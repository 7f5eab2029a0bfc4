"""`python -m orchestration ...` runs the CLI (the same as the `shiftwatch` script)."""

from orchestration.cli import app

app()
