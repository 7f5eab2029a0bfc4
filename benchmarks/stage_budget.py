"""Where a one-instance /predict spends its time: each stage of the service's request path
timed alone, in this process, with the service's own code on the benchmark's request.

The HTTP part (uvicorn, the ASGI wrappers, the client) is what is left of the measured p50
once these are taken out (render.service). The shadows are not on the path: they run in
their own process after the answer (service/shadow_process.py); their time per request is
timed too, as what that process spends.
"""

from __future__ import annotations

import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.timing import RepetitionBudget, Timing, time_calls
from service.event_log import EventLog
from service.predictor import Predictor
from service.routes import PREDICTIONS
from service.schemas import PredictRequest
from service.shadows import ShadowWork
from shiftwatch.bundle import ModelBundle
from shiftwatch.encoding import pad_batch
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport.segments import SegmentWriter

# (stage, what it covers); the order of a request.
STAGES = (
    ("parse and validate", "body bytes to `Instance`s: pydantic-core JSON and the limits"),
    ("thread hop", "event loop to the inference thread and back (an empty call)"),
    ("tokenizer", "the primary's tokenizer on the sequence"),
    ("session.run", "onnxruntime, batch 1"),
    ("outputs, events, metrics", "Predictor.predict less tokenizer and session.run"),
    ("event log append", "the request's part: the event queued for the writer"),
    ("response JSON", "the answers serialised by pydantic-core"),
    ("event log writer", "off the request: one event to a file segment, in the writer thread"),
    ("shadows", "off the request: the default shadows on the sequence, in their process"),
)


def hop_timing(budget: RepetitionBudget) -> Timing:
    """Round trips of an empty call from an event loop to a one-thread pool."""
    pool = ThreadPoolExecutor(1)

    async def hops() -> Timing:
        loop = asyncio.get_running_loop()
        samples = []
        for _ in range(budget.warmup):
            await loop.run_in_executor(pool, int)
        for _ in range(budget.max_reps):
            started = loop.time()
            await loop.run_in_executor(pool, int)
            samples.append((loop.time() - started) * 1e3)
        return Timing(tuple(samples))

    try:
        return asyncio.run(hops())
    finally:
        pool.shutdown()


def stage_timings(
    bundles: dict[str, tuple[ModelBundle, str]],
    settings: ServiceSettings,
    body: bytes,
    budget: RepetitionBudget,
) -> dict[str, Timing]:
    """Each stage's latencies (ms), by STAGES' names, on `body` (one instance)."""
    predictor = Predictor(bundles, settings)
    primary = predictor.primary
    instances = PredictRequest.model_validate_json(body).instances
    text = [instances[0].sequence]
    ids, mask = pad_batch(primary.bundle.tokenizer.encode(text).ids)
    answers, events, work = predictor.predict(instances)
    if work is not None:  # with shadows the primary's events wait for them, in `work`
        events = work.events
    timings = {
        "parse and validate": time_calls(lambda: PredictRequest.model_validate_json(body), budget),
        "thread hop": hop_timing(budget),
        "tokenizer": time_calls(lambda: primary.bundle.tokenizer.encode(text), budget),
        "session.run": time_calls(lambda: primary.classifier.run(ids, mask), budget),
        "response JSON": time_calls(lambda: PREDICTIONS.serializer.to_json(answers), budget),
    }
    whole = time_calls(lambda: predictor.predict(instances), budget)
    rest = timings["tokenizer"].median_ms + timings["session.run"].median_ms
    timings["outputs, events, metrics"] = Timing(tuple(ms - rest for ms in whole.samples_ms))
    with tempfile.TemporaryDirectory(prefix="stage_budget_") as folder:
        writer = SegmentWriter(Path(folder), 1 << 30, 1 << 31)
        unstarted = EventLog(writer, queue_size=10 * budget.max_reps + budget.warmup + 10)
        timings["event log append"] = time_calls(lambda: unstarted.append(events), budget)
        timings["event log writer"] = time_calls(lambda: writer.write(events), budget)
        writer.close()
    if work is not None:  # as the shadow process gets it: no encodings, events to complete

        def shadows() -> None:
            fresh = [event.model_copy(update={"shadows": []}) for event in events]
            predictor.run_shadows(ShadowWork(work.texts, {}, fresh, work.shadow_names))

        timings["shadows"] = time_calls(shadows, budget)
    return timings
