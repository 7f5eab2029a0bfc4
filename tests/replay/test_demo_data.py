"""`shiftwatch demo --data`: the whole main job on a dataset unlike the embedded one.

The test writes its own labeled file: four other labels, other domains (one held out
as `split=ood`), raw text with punctuation and casing (so a subword tokenizer is
trained), other lengths. Then the CLI trains, exports, serves, replays and reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from exports.config import ExportConfig
from exports.prepare import prepare_bundles
from orchestration.cli import app
from shiftwatch.data import load_dataset
from training.config import profile

pytestmark = pytest.mark.slow
KEYWORDS = {
    "billing": ["invoice", "charged", "refund", "payment", "card", "billed", "subscription"],
    "outage": ["down", "offline", "error", "crash", "unavailable", "timeout", "broken"],
    "praise": ["thanks", "great", "love", "excellent", "helpful", "amazing", "perfect"],
    "question": ["how", "where", "can", "does", "what", "which", "possible"],
}
FILLER = {
    "email": "dear team regarding account please kindly message best regards sincerely".split(),
    "chat": "hey hi ok so um yeah lol right now just quick".split(),
    "forum": "posted thread reply anyone else here update edit original topic".split(),
    "voice": "caller said transcript agent hold line spoke recording noted".split(),
}
SPLITS = (("train", 40, ("email", "chat", "forum")), ("val", 10, ("email", "chat", "forum")))
SPLITS += (("test", 7, ("email", "chat", "forum")), ("ood", 20, ("voice",)))


def support_tickets(path: Path) -> Path:
    """764 tickets; the held-out `voice` domain has its own filler and one keyword, not two."""
    rng = np.random.default_rng(7)
    rows = []
    for split, per_class, domains in SPLITS:
        for domain in domains:
            for label, keys in KEYWORDS.items():
                for _ in range(per_class):
                    words = list(rng.choice(FILLER[domain], size=int(rng.integers(5, 30))))
                    for _ in range(1 if domain == "voice" else 2):
                        words[int(rng.integers(len(words)))] = str(rng.choice(keys))
                    text = " ".join(words).capitalize() + str(rng.choice([".", "!", "?"]))
                    rows.append({"text": text, "label": label, "domain": domain, "split": split})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.behaviour
def test_demo_on_a_users_dataset_runs_end_to_end(tmp_path: Path) -> None:
    data = support_tickets(tmp_path / "tickets.csv")
    out, docs = tmp_path / "demo", tmp_path / "docs"
    args = ["demo", "--data", str(data), "--after", "split=ood", "--out", str(out)]
    args += ["--runs-dir", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models")]
    args += ["--docs", str(docs), "--events", "120", "--rate", "60", "--window", "40"]
    result = CliRunner().invoke(app, [*args, "--label-delay", "0.2"])
    assert result.exit_code == 0, result.output

    rows = json.loads((out / "summary.json").read_text())
    names = {"tickets-baseline", "tickets-research", "tickets-no_pe"}
    assert {r["model"] for r in rows} == names
    assert {r["scenario"] for r in rows} == {"in_domain", "ood", "gradual"}
    by = {(r["scenario"], r["model"]): r for r in rows}
    primary = by[("ood", "tickets-baseline")]
    assert primary["role"] == "primary" and primary["architecture"] == "baseline"
    # The held-out domain is harder (one keyword among unseen filler): live accuracy falls.
    assert by[("in_domain", "tickets-baseline")]["live_accuracy_after_onset"] >= 0.8
    assert primary["live_accuracy_after_onset"] <= primary["reference_accuracy"] - 0.1
    assert primary["events_to_first_alarm"] is not None
    # The same report as the embedded default, under the dataset's name in docs.
    report = (docs / "deployment-tickets.md").read_text()
    assert "## Findings" in report and "tickets-baseline" in report
    for scenario in ("in_domain", "ood", "gradual"):
        assert (out / scenario / "timeline.json").is_file()
        assert (docs / "deployment-tickets" / f"{scenario}.png").stat().st_size > 5000
    assert (out / "ood" / "report.html").is_file()
    # The table fits 80 columns when piped, names whole.
    table = result.output[result.output.index("deployment-time degradation") :]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "tickets-research" in table and "…" not in table
    # The models are in the store under the dataset's names.
    assert {m.tag.name for m in bentoml.models.list()} >= names

    # A second run reuses the finished runs and bundles: no training, the same store versions.
    dataset = load_dataset(data)
    variants = {n.removeprefix("tickets-"): n for n in names}
    steps: list[str] = []
    again = prepare_bundles(
        dataset,
        profile("quick"),
        tmp_path / "runs",
        tmp_path / "models",
        variants,
        ExportConfig(),
        on_step=steps.append,
    )
    assert all(
        step.endswith(f"reusing the run in {tmp_path / 'runs' / 'tickets' / v / '0'}")
        for step, v in zip(steps, variants, strict=True)
    )
    assert {tag for _, tag in again.values()} == {
        str(bentoml.models.get(f"{n}:latest").tag) for n in names
    }


@pytest.mark.unit
def test_demo_selection_errors_come_before_training(tmp_path: Path) -> None:
    data = support_tickets(tmp_path / "tickets.csv")
    result = CliRunner().invoke(
        app, ["demo", "--data", str(data), "--after", "split=holdout", "--runs-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "no row has split=holdout" in " ".join(result.output.split())  # rich wraps lines
    assert not any(tmp_path.glob("tickets/*"))  # nothing trained
