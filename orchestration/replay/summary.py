"""What a replay shows: per scenario and model, accuracy before and after the onset, and alarms."""

from __future__ import annotations

import math


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def summarize(timeline: dict) -> list[dict]:
    """One row per model of a replay's timeline (see `run_replay`).

    Live and estimated accuracy "after onset" are the monitor's final window, which
    holds only post-onset traffic when the window size is at most the events sent
    after the onset (`window_post_onset` says whether it did).
    """
    final = timeline["final"]
    onset, sent = timeline["onset_index"], timeline["sent"]
    window_size = final.get("window_size") or 0
    served = {m["name"]: m for m in timeline.get("models", [])}
    rows = []
    for model, window in final.get("models", {}).items():
        first_alarm = _first(timeline, model, "dataset_drift")
        # In the in-domain phase, count polls once the window holds only this run's traffic.
        false_alarms = sum(
            1
            for s in timeline["samples"]
            if not s["after_onset"]
            and s["sent"] >= window_size
            and s["models"].get(model, {}).get("dataset_drift")
        )
        live, estimated = _nan(window["live_accuracy"]), _nan(window["estimated_accuracy"])
        label_shift_alarm = _first(timeline, model, "label_shift")
        rows.append(
            {
                "scenario": timeline["config"]["scenario"],
                "model": model,
                "architecture": served.get(model, {}).get("architecture"),
                "role": served.get(model, {}).get("role"),
                "reference_accuracy": _nan(window["reference_accuracy"]),
                "live_accuracy_after_onset": live,
                "estimated_accuracy_after_onset": estimated,
                "accuracy_bound_after_onset": _nan(window.get("accuracy_bound")),
                "label_free_bound_after_onset": _nan(window.get("label_free_bound")),
                "corrected_accuracy_after_onset": _nan(window.get("corrected_accuracy")),
                # On the same rows: the headline estimate on the window's labeled rows.
                "estimation_error": _nan(window.get("estimation_error")),
                "headline_estimator": window.get("headline_estimator"),
                "estimation_errors": {
                    k: _nan(v) for k, v in window.get("estimation_errors", {}).items()
                },
                "events_to_label_shift_alarm": label_shift_alarm,
                "final_label_shift": bool(window.get("label_shift")),
                "events_to_first_alarm": first_alarm,
                "false_alarms_in_domain": false_alarms,
                "final_drift_share": _nan(window["drift_share"]),
                "final_dataset_drift": bool(window["dataset_drift"]),
                "window_post_onset": 0 < window_size <= sent - onset,
                "labeled_in_window": window["labeled"],
            }
        )
    return rows


def _first(timeline: dict, model: str, alarm: str) -> int | None:
    """Events from the onset to the first sample after it with `alarm` set for `model`."""
    onset = timeline["onset_index"]
    return next(
        (
            s["sent"] - onset
            for s in timeline["samples"]
            if s["after_onset"] and s["models"].get(model, {}).get(alarm)
        ),
        None,
    )


def fmt(value, kind: str = "pct") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "signed":
        return f"{100 * value:+.1f}"
    return str(value)


# (row key, title, short title for a terminal, format)
COLUMNS = (
    ("scenario", "scenario", "scenario", "str"),
    ("model", "model", "model", "str"),
    ("reference_accuracy", "reference acc %", "ref%", "pct"),
    ("live_accuracy_after_onset", "live acc after onset %", "live%", "pct"),
    ("estimated_accuracy_after_onset", "estimated acc %", "est%", "pct"),
    ("estimation_error", "estimation error (pts)", "err", "signed"),
    ("label_free_bound_after_onset", "label-free lower bound %", "bound%", "pct"),
    ("events_to_first_alarm", "events onset → first drift alarm", "alarm", "str"),
    ("events_to_label_shift_alarm", "events onset → label-shift alarm", "lshift", "str"),
    ("false_alarms_in_domain", "false alarms (in-domain phase)", "false", "str"),
)
# What the short titles mean, printed under the terminal table.
LEGEND = (
    "ref% reference accuracy, live% live accuracy after the onset, est% the headline label-free "
    "estimate, err its error against live accuracy on the same labeled rows (points), bound% "
    "the label-free lower bound on the window's accuracy, alarm "
    "events from the onset to the first dataset-drift alarm, lshift to the first label-shift "
    "alarm, false dataset-drift alarms in the in-domain phase"
)


def estimator_table(rows: list[dict]) -> str:
    """Every estimator's error (estimate − live accuracy on the same rows, points) per row."""
    names = sorted({name for r in rows for name in r.get("estimation_errors", {})})
    lines = [
        "| scenario | model | " + " | ".join(names) + " |",
        "|" + "---|" * (2 + len(names)),
    ]
    for r in rows:
        errors = r.get("estimation_errors", {})
        cells = [fmt(errors.get(n), "signed") for n in names]
        lines.append(f"| {r['scenario']} | {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    header = "| " + " | ".join(title for _, title, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row[key], kind) for key, _, _, kind in COLUMNS) + " |")
    return "\n".join(lines)
