"""The shadow worker without a server: order, saturation, shutdown, failures; each event once."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from service.shadows import ShadowWork, ShadowWorker
from shiftwatch.events import ModelOutput, PredictionEvent

pytestmark = pytest.mark.unit

SHADOWS = ["research", "no_pe"]
WAIT = 10.0  # seconds a test waits for the worker's thread before failing


def output(model: str) -> ModelOutput:
    return ModelOutput(
        model=model,
        model_version=f"{model}:v1",
        predicted_label="a",
        confidence=0.9,
        entropy=0.3,
        probabilities={"a": 0.9, "b": 0.1},
        embedding=[],
    )


def work(*request_ids: str) -> ShadowWork:
    events = [
        PredictionEvent(**output("baseline").model_dump(), request_id=r, timestamp=1.0, features={})
        for r in request_ids
    ]
    return ShadowWork(list(request_ids), {}, events, list(SHADOWS))


def skipped(reason: str) -> float:
    return REGISTRY.get_sample_value("shiftwatch_shadow_skipped_total", {"reason": reason}) or 0.0


class Recorder:
    """`run_shadows` and `deliver` for a worker: shadows answer once `release` is set."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.release = threading.Event()
        self.started = threading.Event()
        self.delivered: list[PredictionEvent] = []
        self.lock = threading.Lock()

    def run_shadows(self, work: ShadowWork) -> list[PredictionEvent]:
        self.started.set()
        assert self.release.wait(WAIT)
        if self.fail:
            raise RuntimeError("shadow session failed")
        for event in work.events:
            event.shadows = [output(name) for name in SHADOWS]
        return work.events

    def deliver(self, events: list[PredictionEvent]) -> None:
        with self.lock:
            self.delivered += events

    def by_id(self) -> dict[str, PredictionEvent]:
        ids = [e.request_id for e in self.delivered]
        assert len(ids) == len(set(ids)), f"an event was delivered twice: {ids}"
        return {e.request_id: e for e in self.delivered}


def test_events_wait_for_their_shadows_and_come_in_order() -> None:
    recorder = Recorder()
    worker = ShadowWorker(recorder.run_shadows, recorder.deliver, capacity=10).start()
    worker.submit(work("r1", "r2"))
    worker.submit(work("r3"))
    assert recorder.started.wait(WAIT)
    assert recorder.delivered == []  # nothing is written before the shadows answered
    recorder.release.set()
    worker.close()
    assert [e.request_id for e in recorder.delivered] == ["r1", "r2", "r3"]
    for event in recorder.delivered:
        assert [s.model for s in event.shadows] == SHADOWS and event.skipped_shadows == []


def test_a_saturated_worker_skips_the_shadows_at_once_and_counts_them() -> None:
    recorder = Recorder()
    worker = ShadowWorker(recorder.run_shadows, recorder.deliver, capacity=2).start()
    before = skipped("saturated")
    worker.submit(work("busy"))  # taken by the worker, which waits for `release`
    assert recorder.started.wait(WAIT)
    worker.submit(work("q1", "q2"))  # fills the queue
    worker.submit(work("over"))  # beyond it: delivered now, on this thread, shadows skipped
    assert [e.request_id for e in recorder.delivered] == ["over"]
    assert recorder.delivered[0].shadows == [] and recorder.delivered[0].skipped_shadows == SHADOWS
    assert skipped("saturated") == before + 1
    assert worker.pending == 2
    recorder.release.set()
    worker.close()
    events = recorder.by_id()
    assert set(events) == {"busy", "q1", "q2", "over"}
    assert all(len(events[r].shadows) == 2 for r in ("busy", "q1", "q2"))


def test_close_skips_what_it_cannot_finish_and_loses_nothing() -> None:
    recorder = Recorder()
    worker = ShadowWorker(recorder.run_shadows, recorder.deliver, capacity=10).start()
    before = skipped("shutdown")
    worker.submit(work("running"))
    assert recorder.started.wait(WAIT)
    worker.submit(work("w1", "w2"))
    worker.close(timeout=0.1)  # the running shadow outlives the deadline
    assert {e.request_id for e in recorder.delivered} == {"w1", "w2"}
    worker.submit(work("late"))  # after close: delivered at once, skipped
    recorder.release.set()  # the stuck shadow finishes, and its events are delivered
    worker._thread.join(WAIT)
    events = recorder.by_id()
    assert set(events) == {"running", "w1", "w2", "late"}
    assert len(events["running"].shadows) == 2
    for r in ("w1", "w2", "late"):
        assert events[r].skipped_shadows == SHADOWS and events[r].shadows == []
    assert skipped("shutdown") == before + 3


def test_a_failing_shadow_keeps_the_primary_event(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(fail=True)
    recorder.release.set()
    worker = ShadowWorker(recorder.run_shadows, recorder.deliver, capacity=10).start()
    before = skipped("error")
    worker.submit(work("r1"))
    worker.close()
    assert [e.skipped_shadows for e in recorder.delivered] == [SHADOWS]
    assert skipped("error") == before + 1
    assert "shadow models failed" in caplog.text and "RuntimeError" in caplog.text


def test_events_written_before_skipped_shadows_existed_still_parse() -> None:
    old = work("r1").events[0].model_dump(exclude={"skipped_shadows"})
    assert "skipped_shadows" not in old
    assert PredictionEvent.model_validate(old).skipped_shadows == []
