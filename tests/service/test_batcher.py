"""The adaptive batcher (service/batcher.py): a lone request runs at once, requests arriving
during a batch go together in the next, bounded by the batch size; a request that waited
past the limit is refused; an error reaches every request of its batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.batcher import Batcher, QueueTimeout

pytestmark = pytest.mark.unit


class Model:
    """`run` for the batcher: records each batch; holds the first until `release` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def run(self, items: list) -> list:
        self.release.wait(10)
        self.batches.append(list(items))
        if "boom" in items:
            raise RuntimeError("model failed")
        return [f"answer-{item}" for item in items]


async def held_then_released(batcher: Batcher, model: Model, later: list[list]) -> list:
    """One request starts a batch that is held; `later` requests queue; then release."""
    first = asyncio.create_task(batcher.submit(["first"]))
    await asyncio.sleep(0.05)  # the first batch is running (held)
    rest = [asyncio.create_task(batcher.submit(items)) for items in later]
    await asyncio.sleep(0.05)
    model.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_a_lone_request_runs_at_once_without_waiting() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=8, max_latency_ms=1000)

    async def one() -> list:
        answer = asyncio.create_task(batcher.submit(["a", "b"]))
        await asyncio.sleep(0)  # one turn of the loop: the request is submitted, no time passes
        # Already handed to the inference thread, nothing left waiting: no deliberate wait
        # (BentoML's dispatcher held a lone request for its recent average queue time).
        assert batcher._busy and not batcher._waiting
        model.release.set()
        return await answer

    assert asyncio.run(one()) == ["answer-a", "answer-b"]
    assert model.batches == [["a", "b"]]


def test_requests_queued_during_a_batch_share_the_next_up_to_the_batch_size() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=4, max_latency_ms=5000)
    later = [["a", "b"], ["c"], ["d", "e"], ["f"]]
    answers = asyncio.run(held_then_released(batcher, model, later))
    assert answers == [
        ["answer-first"],
        ["answer-a", "answer-b"],
        ["answer-c"],
        ["answer-d", "answer-e"],
        ["answer-f"],
    ]
    # a, b, c fit in 4; d, e would make 5: the next batch.
    assert model.batches == [["first"], ["a", "b", "c"], ["d", "e", "f"]]


def test_batching_off_runs_each_request_alone() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=4, max_latency_ms=5000, batching=False)
    asyncio.run(held_then_released(batcher, model, [["a", "b"], ["c"]]))
    assert model.batches == [["first"], ["a", "b"], ["c"]]


def test_a_request_that_waited_past_the_limit_is_refused() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=4, max_latency_ms=20)
    answers = asyncio.run(held_then_released(batcher, model, [["late"]]))
    assert answers[0] == ["answer-first"]
    assert isinstance(answers[1], QueueTimeout)
    assert "SHIFTWATCH_MAX_LATENCY_MS" in str(answers[1])
    assert model.batches == [["first"]]  # the late request never ran


def test_an_error_reaches_every_request_of_its_batch_and_only_those() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=2, max_latency_ms=5000)
    answers = asyncio.run(held_then_released(batcher, model, [["boom"], ["x"], ["y"]]))
    assert answers[0] == ["answer-first"]
    assert all(isinstance(a, RuntimeError) for a in answers[1:3])  # boom and x together
    assert answers[3] == ["answer-y"]


def test_a_request_that_gave_up_while_waiting_is_skipped() -> None:
    model = Model(hold=True)
    batcher = Batcher(model.run, max_batch_size=4, max_latency_ms=20)

    async def scenario() -> list:
        first = asyncio.create_task(batcher.submit(["first"]))
        await asyncio.sleep(0.05)
        gave_up = asyncio.create_task(asyncio.wait_for(batcher.submit(["gave-up"]), 0.01))
        await asyncio.sleep(0.05)  # it timed out, and waited past the queue limit too
        kept = asyncio.create_task(batcher.submit(["kept"]))
        model.release.set()
        # On a batcher that trips on the request that gave up, "kept" is never run.
        return await asyncio.wait_for(
            asyncio.gather(first, gave_up, kept, return_exceptions=True), 10
        )

    answers = asyncio.run(scenario())
    assert answers[0] == ["answer-first"]
    assert isinstance(answers[1], TimeoutError)
    assert answers[2] == ["answer-kept"]
    assert model.batches == [["first"], ["kept"]]
