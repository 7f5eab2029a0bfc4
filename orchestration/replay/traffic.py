"""Replay traffic: an in-domain phase, then the shift (all at once, or ramped).

Two sources: the embedded generator's named scenarios, and any labeled file a user
brings, with a selection of its rows for before the onset and one for after it
(`split=test` before, `split=ood` after: any column=value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shiftwatch.data.loader import Selection, read_labeled_rows
from shiftwatch.data.synthetic import SHIFT_SETS, sample_scenario

SCENARIOS: dict[str, str] = {
    "in_domain": "the training mixture throughout (the control: no shift)",
    **{name: f"in-domain, then the `{name}` shift set" for name in SHIFT_SETS},
    "gradual": "in-domain, then a share of shifted traffic (all four shift sets) ramping from 0 to 100%",
}
CONTROL = "in_domain"  # the scenario whose "onset" marks no shift
LABEL_SHIFT = "label_shift"  # the scenario that moves class priors only (its own alarm)


def _onset(events: int, onset_fraction: float) -> int:
    if events < 2:
        raise ValueError("events must be at least 2")
    return max(1, int(events * onset_fraction))


def _ramp(before: pd.DataFrame, after: pd.DataFrame, seed: int) -> pd.DataFrame:
    """n = len(before) rows: row i comes from `after` with probability i / (n - 1), else from
    `before` (`after` holds at least n rows)."""
    n = len(before)
    shifted = np.linspace(0.0, 1.0, n) > np.random.default_rng(seed).random(n)
    rows = [after.iloc[i] if s else before.iloc[i] for i, s in enumerate(shifted)]
    return pd.DataFrame(rows).reset_index(drop=True).assign(shifted=shifted)


def scenario_traffic(
    scenario: str, events: int, seed: int, onset_fraction: float = 0.5
) -> tuple[pd.DataFrame, int]:
    """Rows to send, in order, and the index of the first row after the shift onset.

    Every scenario begins in-domain for `onset_fraction` of its events, so the
    onset is known; `in_domain` keeps going in-domain (its onset marks nothing).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {sorted(SCENARIOS)}")
    onset = _onset(events, onset_fraction)
    before = sample_scenario(None, onset, seed).assign(shifted=False)
    after_n = events - onset
    if scenario == CONTROL:
        after = sample_scenario(None, after_n, seed + 1).assign(shifted=False)
    elif scenario == "gradual":
        shifted_pool = pd.concat(
            [sample_scenario(name, after_n, seed + 1 + k) for k, name in enumerate(SHIFT_SETS)],
            ignore_index=True,
        ).sample(frac=1.0, random_state=seed)
        after = _ramp(sample_scenario(None, after_n, seed + 1), shifted_pool, seed)
    else:
        after = sample_scenario(scenario, after_n, seed + 1).assign(shifted=True)
    return pd.concat([before, after], ignore_index=True), onset


def _draw(rows: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` rows in a random order, each row once before any repeats (fewer rows than `n`)."""
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(-(-n // len(rows)))])
    return rows.iloc[order[:n]].reset_index(drop=True)


def file_traffic(
    path: Path | str,
    before: Selection,
    after: Selection | None,
    gradual: bool,
    events: int,
    seed: int,
    onset_fraction: float = 0.5,
) -> tuple[pd.DataFrame, int]:
    """Rows of a labeled file to send, in order, and the onset index.

    Before the onset: rows of `before`. After it: rows of `after` (all at once, or ramped
    in when `gradual`), or more rows of `before` when `after` is None (the control).
    Rows are drawn without replacement, repeating only when a selection has fewer rows
    than its phase needs.
    """
    frame, _ = read_labeled_rows(path)
    onset = _onset(events, onset_fraction)
    rng = np.random.default_rng(seed)
    before_rows = before.rows(frame, str(path))
    drawn = _draw(before_rows, events, rng)  # both phases' in-domain rows, none twice if can be
    first = drawn.iloc[:onset].assign(shifted=False)
    in_domain_after = drawn.iloc[onset:].reset_index(drop=True)
    if after is None:
        rest = in_domain_after.assign(shifted=False)
    else:
        shifted = _draw(after.rows(frame, str(path)), events - onset, rng)
        rest = _ramp(in_domain_after, shifted, seed) if gradual else shifted.assign(shifted=True)
    columns = ["text", "label", "domain", "shifted"]
    return pd.concat([first[columns], rest[columns]], ignore_index=True), onset
