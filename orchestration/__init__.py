"""Orchestration: the `shiftwatch` command line, the replay and the demo. The top layer: it
may import every stage; nothing imports it."""
