"""`shiftwatch demo`: the live stack on loopback, a set of replays, findings written.

A `DemoPlan` says which models serve (a primary and shadows, by name) and what is
replayed: the embedded generator's scenarios, or a user's labeled file with the
rows before and after its shift.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from orchestration.replay.driver import ReplayConfig, run_replay
from orchestration.replay.findings import findings
from orchestration.replay.plot import plot_timeline
from orchestration.replay.stack import start_monitor, start_service
from orchestration.replay.summary import estimator_table, markdown_table, summarize
from orchestration.replay.traffic import CONTROL, SCENARIOS


@dataclass(frozen=True)
class DemoPlan:
    """Who serves and what is replayed."""

    primary: str  # model names (bundles in the store)
    shadows: tuple[str, ...]
    replays: tuple[ReplayConfig, ...]  # their url and monitor_url are filled in at run time
    descriptions: dict[str, str]  # replay (scenario) name -> what it sends
    extra_domains: tuple[str, ...] = ()  # client domains outside the references, as labels
    source: str = "the embedded generator's scenarios"
    docs_name: str = "deployment"  # with --docs: DOCS/<docs_name>.md and DOCS/<docs_name>/*.png


def embedded_plan(
    base: ReplayConfig, scenarios: list[str], primary: str, shadows: tuple[str, ...]
) -> DemoPlan:
    """The built-in scenarios on the generator's traffic."""
    return DemoPlan(
        primary=primary,
        shadows=shadows,
        replays=tuple(replace(base, scenario=s) for s in scenarios),
        descriptions={s: SCENARIOS[s] for s in scenarios},
        extra_domains=("clinical",),
    )


def file_plan(
    base: ReplayConfig,
    data: str,
    before: str,
    after: str,
    primary: str,
    shadows: tuple[str, ...],
    extra_domains: tuple[str, ...],
    docs_name: str = "deployment",
) -> DemoPlan:
    """A user's labeled file: the control (`before` throughout), the shift at once, and the
    shift ramped in. The shift is named after the value it selects (e.g. `ood`)."""
    shift = after.partition("=")[2].strip() or "shift"
    shift = shift if shift not in (CONTROL, "gradual") else f"{shift}-shift"
    common = {"data": data, "before": before}
    return DemoPlan(
        primary=primary,
        shadows=shadows,
        replays=(
            replace(base, scenario=CONTROL, after=None, gradual=False, **common),
            replace(base, scenario=shift, after=after, gradual=False, **common),
            replace(base, scenario="gradual", after=after, gradual=True, **common),
        ),
        descriptions={
            CONTROL: f"rows with `{before}` throughout (the control: no shift)",
            shift: f"rows with `{before}`, then rows with `{after}`",
            "gradual": f"rows with `{before}`, then a share of rows with `{after}` ramping "
            "from 0 to 100%",
        },
        extra_domains=extra_domains,
        source=f"`{data}`",
        docs_name=docs_name,
    )


def run_demo(
    out_dir: Path,
    models_dir: Path,
    plan: DemoPlan,
    window_size: int,
    docs_dir: Path | None = None,
    on_step: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Start the service (the plan's primary and shadows) and the monitor, run each replay,
    write timelines, PNGs, Evidently reports and deployment.md; stop both always."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    events = out_dir / "events"
    models = [plan.primary, *plan.shadows]
    service_env = {
        "SHIFTWATCH_PRIMARY_MODEL": plan.primary,
        "SHIFTWATCH_SHADOW_MODELS": ",".join(plan.shadows),
        "SHIFTWATCH_EVENT_LOG_DIR": str(events),
    }
    monitor_env = {
        "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(events),
        "SHIFTWATCH_MONITOR_STATE_PATH": str(out_dir / "monitor" / "state.sqlite"),
        "SHIFTWATCH_MONITOR_MODELS_DIR": str(models_dir),
        "SHIFTWATCH_MONITOR_MODELS": ",".join(models),
        "SHIFTWATCH_MONITOR_WINDOW_SIZE": str(window_size),
        "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "1",
        "SHIFTWATCH_MONITOR_RECOMPUTE_EVENTS": str(max(10, window_size // 10)),
        "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.25",
        "SHIFTWATCH_MONITOR_EXTRA_DOMAINS": ",".join(plan.extra_domains),
    }
    started = []
    rows = []
    try:
        on_step("starting the service")
        service = start_service(service_env, out_dir / "logs" / "service.log")
        started.append(service)
        on_step("starting the monitor")
        monitor = start_monitor(monitor_env, out_dir / "logs" / "monitor.log")
        started.append(monitor)
        for config in plan.replays:
            on_step(f"replaying {config.scenario}")
            config = replace(config, url=service.url, monitor_url=monitor.url)
            timeline = run_replay(config, on_progress)
            folder = out_dir / config.scenario
            folder.mkdir()
            (folder / "timeline.json").write_text(json.dumps(timeline, indent=2))
            plot_timeline(timeline, folder / "timeline.png")
            report = httpx.get(monitor.url + "/report", params={"model": plan.primary}, timeout=60)
            if report.status_code == 200:
                (folder / "report.html").write_text(report.text)
            rows.extend(summarize(timeline))
    finally:
        for process in reversed(started):
            process.stop()
    (out_dir / "summary.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "deployment.md").write_text(
        deployment_markdown(rows, plan, window_size, lambda s: f"{s}/timeline.png")
    )
    if docs_dir is not None:
        figures = docs_dir / plan.docs_name
        figures.mkdir(parents=True, exist_ok=True)
        for config in plan.replays:
            shutil.copy(
                out_dir / config.scenario / "timeline.png", figures / f"{config.scenario}.png"
            )
        (docs_dir / f"{plan.docs_name}.md").write_text(
            deployment_markdown(rows, plan, window_size, lambda s: f"{plan.docs_name}/{s}.png")
        )
    return rows


def deployment_markdown(
    rows: list[dict], plan: DemoPlan, window_size: int, figure: Callable[[str], str]
) -> str:
    base = plan.replays[0]
    served = {r["model"]: r["architecture"] for r in rows}
    shadows = ", ".join(f"`{s}` ({served.get(s) or 'unknown'})" for s in plan.shadows) or "none"
    names = [c.scenario for c in plan.replays]
    lines = [
        "# Deployment-time degradation, replayed through the live stack",
        "",
        f"Generated by `shiftwatch demo` at {datetime.now(UTC).isoformat(timespec='seconds')} — do not edit by hand.",
        f"Traffic: {plan.source}. Each replay: {base.events} sequences at {base.rate:g} "
        f"requests/s, the first {100 * base.onset_fraction:.0f}% in-domain, then the shift; "
        f"labels for {100 * base.label_coverage:.0f}% of predictions, {base.label_delay:g} s "
        f"later. Service: primary `{plan.primary}` ({served.get(plan.primary) or 'unknown'}), "
        f"shadows {shadows}. Monitor: window of the last {window_size} predictions per model. "
        "Accuracy after onset is the monitor's final window.",
        "",
        "## Findings",
        "",
    ]
    for f in findings(rows):
        lines += [f"**{f['claim']}** — **{f['verdict']}**. Rule: {f['rule']}. {f['numbers']}.", ""]
    lines += ["## Per replay and model", "", markdown_table(rows), ""]
    lines += [
        "## Label-free estimators",
        "",
        "Each estimator's error against live accuracy on the same labeled rows of the final "
        "window (estimate − live, points; – where the window held too few rows). The headline "
        "is fixed in advance; the others are exported beside it "
        "(`shiftwatch_estimator_accuracy_ratio{estimator}`).",
        "",
        estimator_table(rows),
        "",
        "## Replays",
        "",
    ]
    lines += [f"- `{s}`: {plan.descriptions[s]}" for s in names]
    lines += ["", "## Timelines", ""]
    lines += [f"![{s}]({figure(s)})\n" for s in names]
    return "\n".join(lines)
