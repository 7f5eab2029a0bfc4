"""The event log's directory fails (root ignores chmod, so: a path under a regular file, or the
directory swapped for a file mid-run): the service keeps answering 200, every lost event is
counted in shiftwatch_event_log_write_errors_total{reason="io_error"}, nothing crashes, and
writing resumes once the directory is back."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from harness import wait_until
from tests.reliability.conftest import (
    metric,
    predict_body,
    running_service,
    service_env,
)
from tests.servers import logged_events

pytestmark = [pytest.mark.slow, pytest.mark.behaviour]
WRITE_ERRORS = "shiftwatch_event_log_write_errors_total"


def io_errors(url: str) -> float:
    return metric(httpx.get(url + "/metrics").text, WRITE_ERRORS, reason="io_error")


def logged_lines(events: Path) -> int:
    return len(logged_events(events)) if events.is_dir() else 0


def send_predictions(url: str, requests: int, instances: int, prefix: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for r in range(requests):
            body = predict_body(instances, 6, prefix=prefix, start=r * instances)
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text


def test_a_log_directory_under_a_file_is_counted_and_serving_goes_on(
    tiny_store: dict, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the log's parent directory should be\n")
    env = service_env(tmp_path, SHIFTWATCH_EVENT_LOG_DIR=str(blocker / "events"))
    with running_service(env, tmp_path / "serve.log") as service:
        send_predictions(service.url, requests=10, instances=2, prefix="under-file")
        labels = {
            "labels": [{"request_id": f"under-file-{i}", "label": "topic_a"} for i in range(5)]
        }
        feedback = httpx.post(service.url + "/feedback", json=labels)
        assert feedback.status_code == 200 and feedback.json()["accepted"] == 5

        # 20 prediction events + 5 label events, none of them writable.
        wait_until(lambda: io_errors(service.url) >= 25, 30, "25 write errors", every=0.2)
        assert io_errors(service.url) == 25
        assert httpx.get(service.url + "/readyz").status_code == 200
        assert service.process.poll() is None
    assert "event log write failed" in (tmp_path / "serve.log").read_text()


def test_the_directory_replaced_by_a_file_mid_run_is_counted_then_recovers(
    tiny_store: dict, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    with running_service(service_env(tmp_path), tmp_path / "serve.log") as service:
        send_predictions(service.url, requests=5, instances=2, prefix="before")
        wait_until(lambda: logged_lines(events) >= 10, 30, "10 events logged", every=0.2)
        assert logged_lines(events) == 10

        # The writer still holds its segment open; without a check it would write on into
        # the unlinked file and lose every event silently.
        shutil.rmtree(events)
        events.write_text("the event log's directory, replaced by a file\n")
        send_predictions(service.url, requests=5, instances=2, prefix="during")
        wait_until(lambda: io_errors(service.url) >= 10, 30, "10 write errors", every=0.2)
        assert io_errors(service.url) == 10
        assert httpx.get(service.url + "/readyz").status_code == 200

        events.unlink()
        events.mkdir()
        send_predictions(service.url, requests=5, instances=2, prefix="after")
        wait_until(lambda: logged_lines(events) >= 10, 30, "10 events logged", every=0.2)
        assert logged_lines(events) == 10
        assert io_errors(service.url) == 10  # nothing else lost
        assert service.process.poll() is None
