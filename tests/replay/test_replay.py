"""A small replay through the real service and the real monitor (the CI version of `make demo`)."""

from __future__ import annotations

import pytest

from shiftwatch.replay.driver import ReplayConfig, ReplayError, run_replay
from shiftwatch.replay.stack import start_monitor
from shiftwatch.replay.summary import summarize
from tests.servers import monitor_env

pytestmark = pytest.mark.slow
WINDOW = 100  # predictions per model in the monitor's window; the post-onset phase is longer


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


def replay(live_server: dict, monitor_url: str, scenario: str) -> dict:
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
    )
    return run_replay(config)


def test_in_domain_control_raises_no_drift_alarm(live_server: dict, monitor_url: str) -> None:
    timeline = replay(live_server, monitor_url, "in_domain")
    final = timeline["final"]
    # Everything sent reached the monitor, once.
    assert final["predictions_ingested"] == timeline["sent"] == 320
    assert final["labels_joined"] == timeline["labels_sent"] == 320
    baseline = {r["model"]: r for r in summarize(timeline)}["baseline"]
    # In-domain traffic against an in-domain reference: with K-S at p < 0.05 per column
    # and dataset drift needing half the columns, a false alarm on a full window is rare
    # (0 of 300 synthetic windows of 100 rows in tests/monitoring/test_drift.py's setup).
    alarms = [
        s
        for s in timeline["samples"]
        if s["sent"] >= WINDOW and s["models"]["baseline"]["dataset_drift"]
    ]
    assert alarms == [], alarms
    assert not baseline["final_dataset_drift"]
    # Live accuracy stays near the reference: within 12 points on a 100-row window
    # (two standard errors of a ~85% accuracy on 100 rows is ~7 points).
    assert abs(baseline["live_accuracy_after_onset"] - baseline["reference_accuracy"]) <= 0.12


def test_new_domain_shift_is_seen_as_drift_and_lost_accuracy(
    live_server: dict, monitor_url: str
) -> None:
    timeline = replay(live_server, monitor_url, "new_domain")
    final = timeline["final"]
    assert final["predictions_ingested"] == timeline["sent"] == 320
    assert final["labels_joined"] == timeline["labels_sent"] == 320
    baseline = {r["model"]: r for r in summarize(timeline)}["baseline"]
    assert baseline["window_post_onset"]  # the final window holds only shifted traffic
    # Drift is raised after the onset: the new domain moves lengths, token ranks,
    # client domain and confidence at once.
    assert baseline["events_to_first_alarm"] is not None
    assert baseline["final_dataset_drift"]
    # The small baseline scores ~85% in-domain and ~58% on new_domain (measured when the
    # fixture was sized); 10 points of fall leaves room for window sampling noise.
    assert baseline["live_accuracy_after_onset"] <= baseline["reference_accuracy"] - 0.10


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ReplayError, match="unknown scenario 'sideways'"):
        ReplayConfig(scenario="sideways", url="http://127.0.0.1:1")
    with pytest.raises(ReplayError, match="rate must be > 0"):
        ReplayConfig(scenario="in_domain", url="http://127.0.0.1:1", rate=0)
    with pytest.raises(ReplayError, match="cannot reach the service at http://127.0.0.1:9"):
        run_replay(ReplayConfig(scenario="in_domain", url="http://127.0.0.1:9", events=4))
