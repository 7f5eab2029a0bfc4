"""The label-free estimation benchmark's section: every estimator's error against realised
accuracy, live and settled, and the headline estimator against DESIGN.md's targets."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.render.markdown import markdown_table
from benchmarks.results import (
    ESTIMATION_DELAYS,
    ESTIMATION_EVENTS,
    ESTIMATION_RATE,
    ESTIMATION_WINDOW,
)

TARGET_MEAN, TARGET_WITHIN, WITHIN = 0.03, 0.8, 0.05


def _stats(errors: list[float]) -> tuple[float, float, float, int]:
    """Mean |error|, max |error|, share within 5 points, pairs measured."""
    values = np.abs([e for e in errors if e is not None and not np.isnan(e)])
    if not len(values):
        return float("nan"), float("nan"), float("nan"), 0
    return float(values.mean()), float(values.max()), float((values <= WITHIN).mean()), len(values)


def _pts(x: float) -> str:
    return "–" if np.isnan(x) else f"{100 * x:.1f}"


def render(records: list[dict], seconds: float, machine: str) -> str:
    """This benchmark's section of docs/benchmarks.md, from its saved records (records.json)."""
    headline = records[0]["headline"]
    estimators = sorted({n for r in records for k in ("live", "settled") for n in r[k]})
    pairs = sorted({(r["dataset"], r["scenario"], r["model"]) for r in records})
    settled = {}  # pair -> the settled error of every estimator, per delay
    for r in records:
        settled.setdefault((r["dataset"], r["scenario"], r["model"]), {})[r["delay"]] = r
    same = all(
        len({json.dumps(by_delay[d]["settled"], sort_keys=True) for d in by_delay}) == 1
        for by_delay in settled.values()
    )
    readings = [(f"live, labels {d:g} s late", d, "live") for d in ESTIMATION_DELAYS]
    readings.append(("settled", ESTIMATION_DELAYS[0], "settled"))
    lines = [
        "## Label-free accuracy estimation",
        "",
        f"`make bench-estimation` ({seconds / 60:.0f} min). {machine}",
        "",
        f"Every built-in scenario of the embedded dataset and the real docstrings dataset "
        f"(control, `ood`, ramp), {len(pairs)} scenario × model pairs, each replayed through "
        f"the live stack once per label delay ({' and '.join(f'{d:g} s' for d in ESTIMATION_DELAYS)}): "
        f"{ESTIMATION_EVENTS} sequences at {ESTIMATION_RATE:g}/s, the shift at the halfway mark, a window of the last "
        f"{ESTIMATION_WINDOW} predictions per model. Error = estimate − live accuracy on the same labeled "
        "rows of the post-onset window: *live* at the last poll before the traffic ends (the "
        "newest predictions still unlabeled), *settled* once every label is in. "
        + (
            "The settled errors were identical at both delays (the same seeded traffic and "
            "deterministic models give the same final window), so they appear once."
            if same
            else "The settled errors differed between the delays; the table shows the first."
        )
        + f" Headline estimator, fixed before any of these runs: `{headline}`.",
        "",
    ]
    table = []
    for name in estimators:
        row = [f"`{name}`" + (" (headline)" if name == headline else "")]
        for _, delay, reading in readings:
            mean, worst, within, n = _stats(
                [r[reading].get(name) for r in records if r["delay"] == delay]
            )
            share = "–" if np.isnan(within) else f"{100 * within:.0f}%"
            row.append(f"{_pts(mean)} / {_pts(worst)} / {share} ({n})")
        table.append(row)
    lines += [
        "Mean |error| / max |error| (points) / share of pairs within 5 points (pairs measured):",
        "",
        markdown_table(["estimator", *(title for title, _, _ in readings)], table),
        "",
        "Targets for the headline across scenario × model pairs (DESIGN.md): mean |error| "
        f"≤ {100 * TARGET_MEAN:g} points and ≥ {100 * TARGET_WITHIN:g}% of pairs within "
        f"{100 * WITHIN:g} points.",
        "",
    ]
    for title, delay, reading in readings:
        mean, _, within, n = _stats(
            [r[reading].get(headline) for r in records if r["delay"] == delay]
        )
        met = mean <= TARGET_MEAN and within >= TARGET_WITHIN
        lines.append(
            f"- {title}: mean |error| {_pts(mean)} points, {_pts(within)}% within 5 points "
            f"over {n} pairs: **{'met' if met else 'missed'}**."
        )
    lines += [
        "",
        "Per pair, largest settled headline error first: live accuracy of the final window, "
        "every estimator's settled error (points), and what the headline's sign means.",
        "",
    ]
    rows = []
    for pair, by_delay in sorted(
        settled.items(),
        key=lambda kv: -abs(kv[1][ESTIMATION_DELAYS[0]]["settled"].get(headline) or 0),
    ):
        record = by_delay[ESTIMATION_DELAYS[0]]
        error = record["settled"].get(headline)
        cells = [*pair, _pts(record["live_accuracy"])]
        cells += [_signed(record["settled"].get(n)) for n in estimators]
        cells.append(_meaning(error))
        rows.append(cells)
    lines.append(
        markdown_table(
            ["dataset", "scenario", "model", "live %", *(f"`{n}`" for n in estimators), "headline"],
            rows,
        )
    )
    return "\n".join(lines)


def _signed(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:+.1f}"


def _meaning(error: float | None) -> str:
    """What a confidence-based estimate's miss says about the model on that window."""
    if error is None or np.isnan(error) or abs(error) <= WITHIN:
        return "within 5"
    if error > 0:
        return "over: confident on rows it gets wrong"
    return "under: unsure on rows it gets right"
