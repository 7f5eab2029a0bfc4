"""The service benchmark's per-stage budget: where a one-client /predict's p50 goes."""

from __future__ import annotations

from benchmarks.render.markdown import markdown_table
from benchmarks.results import ALTERNATED, BARE, NO_SHADOWS, ServiceRun
from benchmarks.stage_budget import STAGES
from benchmarks.timing import Timing

OFF_PATH = ("event log writer", "shadows")  # run after the answer, not on its path


def alternated_p50(run: ServiceRun, config) -> float | None:
    ms = run.transports.latencies_ms(ALTERNATED.index(config))
    return Timing(tuple(ms)).median_ms if ms else None


def stage_lines(run: ServiceRun) -> list[str]:
    """The budget table and its note; nothing when the run timed no stages."""
    if not run.stages:
        return []
    rows, on_path = [], 0.0
    for name, covers in STAGES:
        if (timing := run.stages.get(name)) is None:
            continue
        where = "after the answer" if name in OFF_PATH else "request path"
        if name not in OFF_PATH:
            on_path += timing.median_ms
        rows.append([name, covers, where, f"{1000 * timing.median_ms:.0f}"])
    rows.append(["sum on the request path", "", "", f"{1000 * on_path:.0f}"])
    service = alternated_p50(run, NO_SHADOWS)
    bare = alternated_p50(run, BARE)
    if service is not None:
        rest = 1000 * (service - on_path)
        rows.append(
            [
                "HTTP: uvicorn, the ASGI wrappers, the client",
                f"the measured p50 ({1000 * service:.0f} µs, no shadows, alternated blocks) "
                "less the stages above",
                "request path",
                f"{rest:.0f}",
            ]
        )
    if bare is not None:
        model = sum(run.stages[n].median_ms for n in ("tokenizer", "session.run"))
        rows.append(
            [
                "bare server: HTTP, JSON and answer",
                f"its measured p50 ({1000 * bare:.0f} µs) less tokenizer and session.run",
                "request path",
                f"{1000 * (bare - model):.0f}",
            ]
        )
    if run.livez.timing:
        rows.append(
            [
                "BentoML's server path (GET /livez)",
                "uvicorn and BentoML's middleware (OpenTelemetry, metrics, access log, "
                "concurrency limit) with no API call: what /predict no longer takes",
                "beside",
                f"{1000 * run.livez.timing.median_ms:.0f}",
            ]
        )
    return [
        "### Per-stage budget (1 client, no shadows)",
        "",
        "Each stage of the request path timed alone in the benchmark's process with the "
        "service's own code on the benchmark's request (benchmarks/stage_budget.py: "
        "median of repeated calls); the HTTP part is what the measured p50 leaves. "
        "`/predict` and `/feedback` are served ahead of BentoML's API layer "
        "(service/routes.py), so BentoML's own per-request path is measured beside, not in "
        "the sum.",
        "",
        markdown_table(["stage", "covers", "where", "p50 µs"], rows),
        "",
    ]
