"""What an event transport costs the service: p50 with it / p50 with the event log off, and
how far this run's noise moves that ratio. From servers alternated in short blocks (one
client; `live_service.alternate`) or from the grid's interleaved rounds (`Cell`s)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.live_service import Cell

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class TransportCost:
    ratio: float  # of the pooled p50s
    p50_on_ms: float
    p50_off_ms: float
    noise: str  # how far the ratio moves within this run, in words

    @property
    def added_pct(self) -> float:
        return 100 * (self.ratio - 1)


def alternated_cost(on: list[list[float]], off: list[list[float]]) -> TransportCost | None:
    """From two servers' blocks of one alternation, cycle by cycle (latencies, ms): the
    ratio, and its 95% interval from a bootstrap over the cycles (a resampled cycle keeps
    both servers' blocks, paired); None without answers."""
    on_ms, off_ms = [ms for b in on for ms in b], [ms for b in off for ms in b]
    if not (on_ms and off_ms):
        return None
    p50_on, p50_off = float(np.median(on_ms)), float(np.median(off_ms))
    rng, ratios = np.random.default_rng(0), []
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(len(on), size=len(on))
        a, b = [ms for i in pick for ms in on[i]], [ms for i in pick for ms in off[i]]
        if a and b:
            ratios.append(np.median(a) / np.median(b))
    low, high = np.percentile(ratios, [2.5, 97.5])
    noise = f"95% interval {low:.3f}-{high:.3f}x (bootstrap over {len(on)} cycles)"
    return TransportCost(p50_on / p50_off, p50_on, p50_off, noise)


def rounds_cost(on: Cell, off: Cell) -> TransportCost | None:
    """From two servers' cells of the grid: the ratio, and the same ratio within each round."""
    if not (on.timing and off.timing):
        return None
    noise = "-"
    if len(on.round_p50_ms) == len(off.round_p50_ms):  # every round answered, in both
        rounds = [a / b for a, b in zip(on.round_p50_ms, off.round_p50_ms, strict=True)]
        noise = f"per round {min(rounds):.2f}-{max(rounds):.2f}x"
    p50_on, p50_off = on.timing.median_ms, off.timing.median_ms
    return TransportCost(p50_on / p50_off, p50_on, p50_off, noise)
