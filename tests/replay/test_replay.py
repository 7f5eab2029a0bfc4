"""A small replay through the real service and the real monitor (the CI version of `make demo`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.replay.driver import ReplayConfig, ReplayError, run_replay
from orchestration.replay.findings import findings
from orchestration.replay.stack import start_monitor
from orchestration.replay.summary import summarize
from tests.servers import TINY_NAMES, monitor_env, settled_events

pytestmark = pytest.mark.slow
WINDOW = 100  # predictions per model in the monitor's window; the post-onset phase is longer
PRIMARY = TINY_NAMES["baseline"]


@pytest.fixture(scope="module")
def monitor_url(live_server: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("replay-monitor")
    env = monitor_env(
        live_server,
        work,
        window_size=str(WINDOW),
        recompute_seconds="0.3",
        recompute_events="20",
        poll_seconds="0.1",
        extra_domains="clinical",
    )
    process = start_monitor(env, work / "monitor.log")
    try:
        yield process.url
    finally:
        process.stop()


def replay(live_server: dict, monitor_url: str, scenario: str, **data: str) -> dict:
    config = ReplayConfig(
        scenario=scenario,
        url=live_server["url"],
        monitor_url=monitor_url,
        rate=40,
        events=320,
        batch=2,
        label_delay=0.2,
        seed=11,
        poll_seconds=0.25,
        **data,
    )
    return run_replay(config)


@pytest.fixture(scope="module")
def user_file(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labeled file as a user brings it: in-domain test rows and an unseen domain's rows,
    marked in a `split` column (the tiny models never trained on either)."""
    frame = pd.concat(
        [
            tiny_dataset.split("test").assign(split="test"),
            tiny_dataset.split("new_domain").assign(split="ood"),
        ]
    )
    path = tmp_path_factory.mktemp("user-data") / "rows.jsonl"
    frame[["text", "label", "domain", "split"]].to_json(path, orient="records", lines=True)
    return path


@pytest.mark.behaviour
def test_in_domain_control_raises_no_drift_alarm(live_server: dict, monitor_url: str) -> None:
    timeline = replay(live_server, monitor_url, "in_domain")
    final = timeline["final"]
    # Everything sent reached the monitor, once.
    assert final["predictions_ingested"] == timeline["sent"] == 320
    assert final["labels_joined"] == timeline["labels_sent"] == 320
    baseline = {r["model"]: r for r in summarize(timeline)}[PRIMARY]
    # In-domain traffic against an in-domain reference: with K-S at p < 0.05 per column
    # and dataset drift needing half the columns, a false alarm on a full window is rare
    # (0 of 300 synthetic windows of 100 rows in tests/monitoring/test_drift.py's setup).
    alarms = [
        s
        for s in timeline["samples"]
        if s["sent"] >= WINDOW and s["models"][PRIMARY]["dataset_drift"]
    ]
    assert alarms == [], alarms
    assert not baseline["final_dataset_drift"]
    # Live accuracy stays near the reference: within 12 points on a 100-row window
    # (two standard errors of a ~85% accuracy on 100 rows is ~7 points).
    assert abs(baseline["live_accuracy_after_onset"] - baseline["reference_accuracy"]) <= 0.12


@pytest.mark.behaviour
def test_new_domain_shift_is_seen_as_drift_and_lost_accuracy(
    live_server: dict, monitor_url: str
) -> None:
    timeline = replay(live_server, monitor_url, "new_domain")
    final = timeline["final"]
    assert final["predictions_ingested"] == timeline["sent"] == 320
    assert final["labels_joined"] == timeline["labels_sent"] == 320
    baseline = {r["model"]: r for r in summarize(timeline)}[PRIMARY]
    assert baseline["window_post_onset"]  # the final window holds only shifted traffic
    # Drift is raised after the onset: the new domain moves lengths, token ranks,
    # client domain and confidence at once.
    assert baseline["events_to_first_alarm"] is not None
    assert baseline["final_dataset_drift"]
    # The small baseline scores ~85% in-domain and ~58% on new_domain (measured when the
    # fixture was sized); 10 points of fall leaves room for window sampling noise.
    assert baseline["live_accuracy_after_onset"] <= baseline["reference_accuracy"] - 0.10
    # Every label-free estimator reached the summary with its error on the same labeled rows
    # (the headline's is the table's estimation error).
    errors = baseline["estimation_errors"]
    assert set(errors) == {"agreement", "atc_max_confidence", "atc_negative_entropy", "bbse", "doc"}
    # Every row is labeled, so each error is the estimate on the whole window minus its
    # live accuracy.
    assert baseline["labeled_in_window"] == WINDOW
    estimates = final["models"][PRIMARY]["estimates"]
    assert errors == {
        name: pytest.approx(estimates[name] - baseline["live_accuracy_after_onset"])
        for name in errors
    }
    assert baseline["estimation_error"] == errors[baseline["headline_estimator"]]


@pytest.mark.unit
def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ReplayError, match="unknown scenario 'sideways'"):
        ReplayConfig(scenario="sideways", url="http://127.0.0.1:1")
    with pytest.raises(ReplayError, match="rate must be > 0"):
        ReplayConfig(scenario="in_domain", url="http://127.0.0.1:1", rate=0)
    with pytest.raises(ReplayError, match="cannot reach the service at http://127.0.0.1:9"):
        run_replay(ReplayConfig(scenario="in_domain", url="http://127.0.0.1:9", events=4))


@pytest.mark.behaviour
def test_a_users_file_replays_like_a_scenario(
    live_server: dict, monitor_url: str, user_file: Path
) -> None:
    timeline = replay(
        live_server, monitor_url, "ood", data=str(user_file), before="split=test", after="split=ood"
    )
    final = timeline["final"]
    assert final["predictions_ingested"] == timeline["sent"] == 320
    assert final["labels_joined"] == timeline["labels_sent"] == 320
    rows = {r["model"]: r for r in summarize(timeline)}
    assert set(rows) == set(TINY_NAMES.values())
    assert {r["architecture"] for r in rows.values()} == set(TINY_NAMES)
    baseline = rows[PRIMARY]
    assert baseline["role"] == "primary" and baseline["window_post_onset"]
    assert baseline["events_to_first_alarm"] is not None
    assert baseline["live_accuracy_after_onset"] <= baseline["reference_accuracy"] - 0.10
    # Every row sent after the onset came from the selection: the accuracy the client saw
    # on the primary's answers equals the monitor's window (all of it after the onset).
    assert baseline["live_accuracy_after_onset"] == pytest.approx(
        timeline["primary_accuracy_after_onset_from_responses"], abs=0.05
    )
    # The findings compare models by architecture, whatever their names.
    claims = {f["claim"]: f for f in findings(summarize(timeline))}
    assert any(TINY_NAMES["research"] in claim for claim in claims)


@pytest.mark.integration
def test_file_selection_errors_come_before_any_traffic(
    live_server: dict, user_file: Path, tmp_path: Path
) -> None:
    def requests_served() -> int:
        events = settled_events(live_server["events"])
        return sum(e["type"] == "prediction" for e in events)

    before = requests_served()
    url = live_server["url"]
    with pytest.raises(
        ReplayError, match=r"no row has split=holdout; values of 'split': \['ood', 'test'\]"
    ):
        run_replay(ReplayConfig("x", url, data=str(user_file), after="split=holdout", events=10))
    with pytest.raises(ReplayError, match="no column 'source' to select source=web"):
        run_replay(ReplayConfig("x", url, data=str(user_file), before="source=web", events=10))
    with pytest.raises(ReplayError, match="is not of the form column=value"):
        ReplayConfig("x", url, data=str(user_file), after="ood")
    relabelled = pd.read_json(user_file, lines=True)
    relabelled.loc[relabelled["split"] == "ood", "label"] = "sarcasm"
    other = tmp_path / "other.csv"
    relabelled.to_csv(other, index=False)
    with pytest.raises(
        ReplayError, match=r"labels \['sarcasm'\] are not labels of the served model 'acme-base'"
    ):
        run_replay(ReplayConfig("x", url, data=str(other), after="split=ood", events=10))
    # the CLI says the same in one line, exit code 2
    result = CliRunner().invoke(
        app, ["replay", "--url", url, "--data", str(other), "--after", "split=ood"]
    )
    assert result.exit_code == 2 and "'sarcasm'" in result.output
    assert requests_served() == before  # nothing was sent
