"""Each section renders from fixed results exactly as before measuring and rendering were
split (tests/benchmarks/golden/, rendered by the earlier code from the same numbers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import results
from benchmarks.bench_service import FULL, QUICK
from benchmarks.live_service import Alternation, Cell
from benchmarks.machine import Environment
from benchmarks.ort_profile import OpProfile
from benchmarks.render import estimation, inference, reproduction, service
from benchmarks.render.markdown import ROOT, project_path, write_section
from benchmarks.stage_budget import STAGES
from benchmarks.timing import RepetitionBudget, Timing
from shiftwatch.settings import ServiceSettings
from tests.benchmarks import render_inputs as F
from training.config import PROFILES
from training.model import ModelConfig

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"


def environment(omp: str = "unset") -> Environment:
    return Environment(F.MACHINE, F.NOW.isoformat(timespec="seconds"), F.PY, omp, F.VERSIONS)


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.md").read_text()


def op_profiles() -> dict[str, OpProfile]:
    return {
        results.FP32: OpProfile(
            {k: v[1] for k, v in F.OPS.items()}, {k: v[0] for k, v in F.OPS.items()}
        ),
        results.INT8: OpProfile(
            {k: v[3] for k, v in F.OPS.items()}, {k: v[2] for k, v in F.OPS.items()}
        ),
    }


def inference_run(quick: bool) -> results.InferenceRun:
    if not quick:
        return results.InferenceRun(
            command="python -m benchmarks.bench_inference",
            variant="baseline",
            run_dir=Path("artifacts/runs/embedded/baseline/0"),
            config=ModelConfig(vocab_size=1000, num_classes=5),
            threads=2,
            budget=RepetitionBudget(5, 5, 300, 6.0),
            rounds=5,
            quick=False,
            gemm_peak_gflops=152.7,
            timings={k: Timing(v) for k, v in F.inference_timings().items()},
            op_profiles=op_profiles(),
            skipped_lengths=[],
            other_load_cores=0.01,
            wall_s=100.2,
            environment=environment(),
            int8_accuracy=F.ACCURACY,
            int8_source="recorded in artifacts/models/baseline/bundle.json (exported "
            "2026-12-02T05:19:38+00:00 from run artifacts/runs/embedded/baseline/0)",
        )
    return results.InferenceRun(
        command="python -m benchmarks.bench_inference --quick",
        variant="no_pe",
        run_dir=Path("artifacts/runs/embedded/no_pe/0"),
        config=ModelConfig(
            vocab_size=1000,
            num_classes=5,
            max_positions=64,
            positional="none",
            attention="directional_alibi",
        ),
        threads=4,
        budget=RepetitionBudget(1, 3, 20, 0.25),
        rounds=5,
        quick=True,
        gemm_peak_gflops=80.0,
        timings={k: Timing(v) for k, v in F.inference_timings(lengths=(32,)).items()},
        op_profiles=op_profiles(),
        skipped_lengths=[128, 512],
        other_load_cores=0.7,
        wall_s=31.0,
        environment=environment("PASSIVE"),
        int8_accuracy=None,
        int8_source="no bundle with int8 yet (artifacts/models/no_pe has no bundle.json)",
    )


def test_inference_sections() -> None:
    assert inference.render(inference_run(quick=False)) == golden("inference_full")
    assert inference.render(inference_run(quick=True)) == golden("inference_quick")


def service_run(quick: bool, load: float | None) -> results.ServiceRun:
    cells = {
        (c.name, clients): Cell(**F.cell_values(i, clients))
        for i, c in enumerate(results.CONFIGS)
        for clients in F.CLIENTS
    }
    blocks, outcomes = F.alternation_values()
    return results.ServiceRun(
        command="python -m benchmarks.bench_service" + (" --quick" if quick else ""),
        quick=quick,
        budget=QUICK if quick else FULL,
        settings=ServiceSettings(_env_file=None),
        max_tokens=512,
        model_tags={"baseline": "baseline:abc", "research": "research:def", "no_pe": "no_pe:ghi"},
        provider="CPUExecutionProvider",
        request="one instance of 32 tokens (test split row 7, domain news), 300 bytes of JSON",
        raw=Timing(F.samples(0.3, 50, seed=9)),
        livez=Cell(**F.cell_values(7, 1)),
        cells=cells,
        transports=Alternation(blocks, outcomes),
        servers=F.service_facts(),
        redis=F.REDIS_FACTS,
        other_load_cores=load,
        wall_s=150.4,
        environment=environment(),
        stages={
            name: Timing(F.samples(0.02 * (k + 1), 50, seed=20 + k))
            for k, (name, _) in enumerate(STAGES)
        },
    )


def test_service_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("SHIFTWATCH_")]:
        monkeypatch.delenv(variable)  # the settings' defaults, as the golden files were made
    assert service.render(service_run(False, 0.05)) == golden("service_full")
    quick = service_run(True, 0.9)
    assert service.render(quick) == golden("service_quick")
    unanswered = ("batching off", "bare server")
    empty = results.ServiceRun(
        **{
            **quick.__dict__,
            "other_load_cores": None,
            "cells": {k: Cell() if k[0] in unanswered else v for k, v in quick.cells.items()},
            "transports": Alternation([[[] for _ in range(3)] for _ in range(5)], [{}] * 5),
        }
    )
    assert service.render(empty) == golden("service_empty")


def test_estimation_section_from_saved_records() -> None:
    records = json.loads((GOLDEN / "estimation_records.json").read_text())
    assert estimation.render(records, 1234.5, F.MACHINE) == golden("estimation")


def test_reproduction_sections() -> None:
    runs = [
        results.RunTiming("baseline", "0", 6, 80.0, 0.985, 0.701),
        results.RunTiming("research", "0", 5, 90.0, 0.98, 0.723),
    ]
    quick = results.ReproductionRun(
        PROFILES["quick"], "embedded", "embedded", 4000, 3, 250.0, runs, 280.0, 0.02, environment()
    )
    assert reproduction.render(quick) == golden("reproduction_quick")
    paper = results.ReproductionRun(
        PROFILES["paper"],
        "docstrings",
        "artifacts/data/docstrings",
        4000,
        3,
        250.0,
        runs,
        2000.0,
        None,
        environment(),
    )
    assert reproduction.render(paper) == golden("reproduction_paper")


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_section(doc, "a", "first")
    write_section(doc, "b", "second\n")
    write_section(doc, "a", "third")
    assert doc.read_text().endswith(
        "<!-- a:start -->\nthird\n<!-- a:end -->\n\n<!-- b:start -->\nsecond\n<!-- b:end -->\n"
    )


def test_paths_inside_the_project_are_named_relative_to_it(tmp_path: Path) -> None:
    assert project_path(ROOT / "artifacts" / "models" / "baseline") == "artifacts/models/baseline"
    assert project_path(tmp_path / "bundle.json") == str(tmp_path / "bundle.json")
    # The inference section's model line and int8 heading, from a run given absolutely.
    run = results.InferenceRun(
        **{
            **inference_run(quick=True).__dict__,
            "run_dir": ROOT / "artifacts" / "runs" / "embedded" / "no_pe" / "0",
        }
    )
    assert "- Model: no_pe from artifacts/runs/embedded/no_pe/0 (" in inference.render(run)


def test_int8_source_names_the_bundle_relative_to_the_project() -> None:
    from benchmarks.bench_inference import recorded_int8_accuracy

    accuracy, source = recorded_int8_accuracy(ROOT / "artifacts" / "models" / "not-there")
    assert accuracy is None
    assert source == "no bundle with int8 yet (artifacts/models/not-there has no bundle.json)"
