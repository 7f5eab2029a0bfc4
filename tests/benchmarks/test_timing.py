"""Interleaved timing: every call in every round, the order rotating, the budget split."""

from __future__ import annotations

import pytest

from benchmarks.timing import RepetitionBudget, time_interleaved

pytestmark = pytest.mark.unit


def test_calls_alternate_in_rotating_rounds_within_the_budget() -> None:
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    budget = RepetitionBudget(warmup=1, min_reps=3, max_reps=9, seconds=60.0)

    timings = time_interleaved(calls, budget, rounds=3)

    # Each round: one warm-up and 3 timed calls per name; rounds start with a, then b, then c.
    blocks = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert [block[0] for block in blocks] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(set(block)) == 1 for block in blocks)
    assert {name: t.reps for name, t in timings.items()} == {"a": 9, "b": 9, "c": 9}
    assert all(ms >= 0 for t in timings.values() for ms in t.samples_ms)


def test_time_budget_stops_each_round_after_its_share() -> None:
    budget = RepetitionBudget(warmup=0, min_reps=2, max_reps=10_000, seconds=0.0)
    timings = time_interleaved({"x": lambda: None}, budget, rounds=4)
    assert timings["x"].reps == 4  # the minimum (2 / 4 rounds, rounded up to 1) per round
