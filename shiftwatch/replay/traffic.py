"""Scenario traffic: an in-domain phase, then the shift (all at once, or ramped)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shiftwatch.data.synthetic import SHIFT_SETS, sample_scenario

SCENARIOS: dict[str, str] = {
    "in_domain": "the training mixture throughout (the control: no shift)",
    **{name: f"in-domain, then the `{name}` shift set" for name in SHIFT_SETS},
    "gradual": "in-domain, then a share of shifted traffic (all four shift sets) ramping from 0 to 100%",
}


def scenario_traffic(
    scenario: str, events: int, seed: int, onset_fraction: float = 0.5
) -> tuple[pd.DataFrame, int]:
    """Rows to send, in order, and the index of the first row after the shift onset.

    Every scenario begins in-domain for `onset_fraction` of its events, so the
    onset is known; `in_domain` keeps going in-domain (its onset marks nothing).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {sorted(SCENARIOS)}")
    if events < 2:
        raise ValueError("events must be at least 2")
    onset = max(1, int(events * onset_fraction))
    before = sample_scenario(None, onset, seed).assign(shifted=False)
    after_n = events - onset
    if scenario == "in_domain":
        after = sample_scenario(None, after_n, seed + 1).assign(shifted=False)
    elif scenario == "gradual":
        rng = np.random.default_rng(seed)
        shifted_pool = pd.concat(
            [sample_scenario(name, after_n, seed + 1 + k) for k, name in enumerate(SHIFT_SETS)],
            ignore_index=True,
        ).sample(frac=1.0, random_state=seed)
        in_domain_pool = sample_scenario(None, after_n, seed + 1)
        ramp = np.linspace(0.0, 1.0, after_n) > rng.random(after_n)
        after = pd.DataFrame(
            [shifted_pool.iloc[i] if r else in_domain_pool.iloc[i] for i, r in enumerate(ramp)]
        ).assign(shifted=ramp)
    else:
        after = sample_scenario(scenario, after_n, seed + 1).assign(shifted=True)
    return pd.concat([before, after], ignore_index=True), onset
