"""The deployment-time version of the study's claims, decided by stated rules from replay rows.

Models are told apart by their role (the primary) and training architecture, not by
name: a user's `sentiment-v3` trained as `research` is compared as research.
"""

from __future__ import annotations

import math

from orchestration.replay.traffic import CONTROL, LABEL_SHIFT

DROP = 0.01  # live accuracy this far below the reference counts as a fall
TRACKS = 0.05  # |estimated - live| within this counts as tracking
BETTER = 0.01  # research this far above baseline counts as better
HURTS = 0.05  # no_pe this far below baseline counts as hurt


def _verdict(hits: int, total: int) -> str:
    if total == 0:
        return "not tested"
    return "supported" if hits == total else "mixed" if hits else "not supported"


def _by(rows: list[dict], **match: str) -> dict[str, dict]:
    """Scenario -> the row of the first model whose fields equal `match` (e.g. role=primary)."""
    found: dict[str, dict] = {}
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            found.setdefault(r["scenario"], r)
    return found


def _ok(x: float) -> bool:
    return x is not None and not math.isnan(x)


def findings(rows: list[dict]) -> list[dict]:
    main = _by(rows, role="primary")
    primary = next(iter(main.values()))["model"] if main else "the primary"
    shifts = [s for s in main if s != CONTROL]
    out = []

    falls = {
        s: main[s]["reference_accuracy"] - main[s]["live_accuracy_after_onset"] for s in shifts
    }
    hits = [s for s, d in falls.items() if _ok(d) and d >= DROP]
    out.append(
        {
            "claim": f"Live accuracy of the primary ({primary}) falls under each shift.",
            "verdict": _verdict(len(hits), len(shifts)),
            "rule": f"reference − live accuracy after onset ≥ {100 * DROP:g} point",
            "numbers": ", ".join(f"{s} {100 * d:+.1f}" for s, d in falls.items())
            + " (points of drop)",
        }
    )

    # A label shift is caught by its own verdict, a covariate shift by dataset drift.
    def alarm(s: str) -> int | None:
        kind = "events_to_label_shift_alarm" if s == LABEL_SHIFT else "events_to_first_alarm"
        return main[s][kind]

    alarmed = [s for s in shifts if alarm(s) is not None]
    control = main.get(CONTROL)
    quiet = (
        control is not None
        and control["false_alarms_in_domain"] == 0
        and not control["final_dataset_drift"]
    )
    out.append(
        {
            "claim": "The monitor raises an alarm after the onset, and stays quiet on in-domain traffic.",
            "verdict": _verdict(len(alarmed) + int(quiet), len(shifts) + 1),
            "rule": f"a dataset-drift alarm after the onset in each covariate-shift scenario, a "
            f"label-shift alarm in `{LABEL_SHIFT}`; no dataset-drift alarm in the in_domain control",
            "numbers": ", ".join(f"{s}: {alarm(s) if s in alarmed else 'no alarm'}" for s in shifts)
            + " (events from onset to first alarm); control: "
            + ("quiet" if quiet else "alarmed"),
        }
    )

    if LABEL_SHIFT in main:
        flagged = [s for s in main if main[s]["events_to_label_shift_alarm"] is not None]
        hits = int(LABEL_SHIFT in flagged) + sum(
            1 for s in main if s != LABEL_SHIFT and s not in flagged
        )
        out.append(
            {
                "claim": "Label shift is told apart from covariate shift.",
                "verdict": _verdict(hits, len(main)),
                "rule": "a label-shift verdict (predicted-class drift, BBSE class priors moved, "
                "inputs explained by the reference reweighted to those priors) after the onset "
                f"in `{LABEL_SHIFT}`, in no other replay",
                "numbers": "label-shift alarms in: " + (", ".join(flagged) or "none"),
            }
        )

    errors = [
        (r["scenario"], r["model"], r["estimation_error"])
        for r in rows
        if _ok(r["estimation_error"])
    ]
    close = [e for e in errors if abs(e[2]) <= TRACKS]
    headline = next((r["headline_estimator"] for r in rows if r.get("headline_estimator")), "–")
    out.append(
        {
            "claim": f"The headline label-free estimate ({headline}) tracks realised accuracy.",
            "verdict": "supported"
            if errors and len(close) == len(errors)
            else "mixed"
            if len(close) * 2 >= len(errors) > 0
            else "not supported",
            "rule": f"|estimate − live accuracy| ≤ {100 * TRACKS:g} points on the same labeled "
            "rows of the final window, per scenario and model; the headline estimator is fixed "
            "in advance (README, label-free accuracy)",
            "numbers": f"{len(close)} of {len(errors)} within; mean |error| "
            + (f"{100 * sum(abs(e[2]) for e in errors) / len(errors):.1f}" if errors else "–")
            + " points; worst: "
            + ", ".join(
                f"{s}/{m} {100 * e:+.1f}"
                for s, m, e in sorted(errors, key=lambda x: -abs(x[2]))[:3]
            ),
        }
    )

    bounds = [
        (
            r["scenario"],
            r["model"],
            r["live_accuracy_after_onset"] - r["label_free_bound_after_onset"],
        )
        for r in rows
        if _ok(r.get("label_free_bound_after_onset")) and _ok(r["live_accuracy_after_onset"])
    ]
    held = [b for b in bounds if b[2] >= 0]
    out.append(
        {
            "claim": "The label-free lower bound holds: accuracy is at least what it says.",
            "verdict": _verdict(len(held), len(bounds)),
            "rule": "label-free bound ≤ live accuracy on the final window, per scenario and "
            "model; the rule is fixed in advance (README, label-free accuracy)",
            "numbers": f"{len(held)} of {len(bounds)} held; mean live − bound "
            + (f"{100 * sum(b[2] for b in bounds) / len(bounds):.1f}" if bounds else "–")
            + " points"
            + "".join(f"; broken: {s}/{m} {100 * g:+.1f}" for s, m, g in bounds if g < 0),
        }
    )

    research = _by(rows, architecture="research", role="shadow")
    no_pe = _by(rows, architecture="no_pe", role="shadow")
    baseline_primary = {r["architecture"] for r in main.values()} == {"baseline"}
    if research and baseline_primary:
        name = next(iter(research.values()))["model"]
        out.append(
            _gap_claim(
                f"Research ({name}) is better than baseline ({primary}) on the same live traffic.",
                research,
                main,
                shifts,
                BETTER,
                f"research − baseline live accuracy after onset ≥ {100 * BETTER:g} point",
            )
        )
    if no_pe and baseline_primary:
        name = next(iter(no_pe.values()))["model"]
        out.append(
            _gap_claim(
                f"Removing positional encoding ({name}) hurts at deployment time too.",
                main,
                no_pe,
                list(main),
                HURTS,
                f"baseline − no_pe live accuracy ≥ {100 * HURTS:g} points, per scenario",
            )
        )
    return out


def _gap_claim(
    claim: str, ahead: dict, behind: dict, scenarios: list[str], margin: float, rule: str
) -> dict:
    """Supported when `ahead` beats `behind` by `margin` on every scenario."""
    diff = {
        s: ahead[s]["live_accuracy_after_onset"] - behind[s]["live_accuracy_after_onset"]
        for s in scenarios
        if s in ahead and s in behind
    }
    hits = [s for s, d in diff.items() if _ok(d) and d >= margin]
    return {
        "claim": claim,
        "verdict": _verdict(len(hits), len(diff)),
        "rule": rule,
        "numbers": ", ".join(f"{s} {100 * d:+.1f}" for s, d in diff.items()) + " (points)",
    }
