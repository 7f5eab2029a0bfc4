"""The shadow models in their own process: the same events as in the worker's thread, a child
that dies is replaced for the next batch, an error in it skips its batch's shadows and loses
no event (service/shadow_process.py)."""

from __future__ import annotations

import pytest

from harness import wait_until
from service.predictor import Predictor
from service.schemas import Instance
from service.shadow_process import ShadowProcess, ShadowProcessError
from service.shadows import ShadowWorker
from shiftwatch.settings import service_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def batch(tiny_dataset, n: int) -> list[Instance]:
    frame = tiny_dataset.split("test").head(n)
    return [Instance(tokens=t.split(), request_id=f"sp-{i}") for i, t in enumerate(frame["text"])]


@pytest.fixture
def predictor(tiny_store: dict, tiny_settings: None) -> Predictor:
    return Predictor({b.name: (b, tag) for b, tag in tiny_store.values()}, service_settings())


@pytest.fixture
def shadows(predictor: Predictor):
    process = ShadowProcess({m.name: (str(m.bundle.path), m.version) for m in predictor.shadows})
    yield process.start()
    process.stop()


def test_the_process_completes_events_as_the_thread_does(
    predictor: Predictor, shadows: ShadowProcess, tiny_dataset
) -> None:
    instances = batch(tiny_dataset, 12)
    _, _, here = predictor.predict(instances)
    _, _, there = predictor.predict(instances)
    expected = predictor.run_shadows(here)
    got = shadows.run_shadows(there)
    assert [e.request_id for e in got] == [e.request_id for e in expected]
    names = [m.name for m in predictor.shadows]
    for a, b in zip(got, expected, strict=True):
        assert [s.model for s in a.shadows] == [s.model for s in b.shadows] == names
        for x, y in zip(a.shadows, b.shadows, strict=True):
            assert x.predicted_label == y.predicted_label
            assert x.probabilities == pytest.approx(y.probabilities, abs=1e-6)
            assert x.embedding == pytest.approx(y.embedding, abs=1e-5)


def test_a_dead_child_is_replaced_and_an_error_loses_no_event(
    predictor: Predictor, shadows: ShadowProcess, tiny_dataset
) -> None:
    delivered = []
    worker = ShadowWorker(shadows.run_shadows, delivered.extend, capacity=100).start()
    try:
        _, _, first = predictor.predict(batch(tiny_dataset, 3))
        worker.submit(first)
        wait_until(lambda: len(delivered) == 3, 30, "the first batch's events")
        dead = shadows._process
        dead.kill()  # what an out-of-memory kill does
        dead.join(10)
        _, _, second = predictor.predict(batch(tiny_dataset, 4))
        second.texts = second.texts[:1]  # one text for four events: the child raises
        worker.submit(second)
        wait_until(lambda: len(delivered) == 7, 120, "the second batch's events")
        _, _, third = predictor.predict(batch(tiny_dataset, 5))
        worker.submit(third)
        wait_until(lambda: len(delivered) == 12, 30, "the third batch's events")
    finally:
        worker.close()
    assert shadows._process is not dead and shadows._process.is_alive()
    names = [m.name for m in predictor.shadows]
    assert all([s.model for s in e.shadows] == names for e in delivered[:3])
    assert all(e.shadows == [] and e.skipped_shadows == names for e in delivered[3:7])
    assert all([s.model for s in e.shadows] == names for e in delivered[7:])
    assert [e.request_id for e in delivered] == [
        f"sp-{i}" for i in (0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4)
    ]


def test_an_error_in_the_child_is_raised_here(shadows: ShadowProcess, predictor, tiny_dataset):
    _, _, work = predictor.predict(batch(tiny_dataset, 2))
    work.texts = work.texts[:1]  # one text for two events: the child's zip refuses it
    with pytest.raises(ShadowProcessError, match="ValueError"):
        shadows.run_shadows(work)
