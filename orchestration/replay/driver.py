"""Send scenario traffic to the live service, true labels after a delay, and poll the monitor."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx
import numpy as np

from orchestration.replay.traffic import SCENARIOS, file_traffic, scenario_traffic
from shiftwatch.data.loader import DataError, Selection

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The replay cannot run: bad arguments or an unreachable service or monitor."""


@dataclass(frozen=True)
class ReplayConfig:
    # A built-in scenario; or, with `data`, the name this file replay goes by in summaries.
    scenario: str
    url: str  # the service, e.g. http://127.0.0.1:3000
    monitor_url: str | None = None  # the monitor, e.g. http://127.0.0.1:3002
    rate: float = 50.0  # requests per second
    events: int = 600  # sequences sent
    batch: int = 1  # sequences per /predict request
    label_delay: float = 2.0  # seconds between a prediction and its label
    label_coverage: float = 1.0  # share of predictions that get a label
    seed: int = 0
    onset_fraction: float = 0.5  # share of the run before the shift begins
    poll_seconds: float = 1.0  # how often the monitor's /status is sampled
    settle_seconds: float = 60.0  # longest wait for the monitor to catch up at the end
    data: str | None = None  # a labeled file (JSONL, CSV, Parquet) or dataset folder to replay
    before: str = "split=test"  # data: the rows sent before the onset (column=value)
    after: str | None = None  # data: the rows after it; None: `before` throughout (a control)
    gradual: bool = False  # data: ramp the `after` rows in from 0 to 100% instead of at once

    def __post_init__(self) -> None:
        if self.data is None and self.scenario not in SCENARIOS:
            raise ReplayError(
                f"unknown scenario {self.scenario!r}; choose from {sorted(SCENARIOS)}"
            )
        if self.data is not None:
            if not self.scenario or len(self.scenario) > 40:
                raise ReplayError("a file replay needs a name of 1 to 40 characters")
            try:
                self.selections()
            except ValueError as exc:
                raise ReplayError(str(exc)) from exc
            if self.gradual and self.after is None:
                raise ReplayError("a gradual replay needs --after: the rows it ramps in")
        if self.rate <= 0:
            raise ReplayError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.events < 2 or self.batch < 1:
            raise ReplayError("events must be >= 2 and batch >= 1")
        if self.label_delay < 0 or not 0 <= self.label_coverage <= 1:
            raise ReplayError("label-delay must be >= 0 and label-coverage in [0, 1]")
        if not 0 < self.onset_fraction < 1:
            raise ReplayError("onset fraction must be in (0, 1)")

    def selections(self) -> tuple[Selection, Selection | None]:
        before = Selection.parse(self.before)
        return before, None if self.after is None else Selection.parse(self.after)


def replay_traffic(config: ReplayConfig) -> tuple:
    """The rows to send (text, label, domain, shifted) and the onset index."""
    if config.data is None:
        return scenario_traffic(config.scenario, config.events, config.seed, config.onset_fraction)
    before, after = config.selections()
    try:
        return file_traffic(
            config.data,
            before,
            after,
            config.gradual,
            config.events,
            config.seed,
            config.onset_fraction,
        )
    except DataError as exc:
        raise ReplayError(str(exc)) from exc


def served_models(client: httpx.Client, url: str) -> dict:
    """The service's GET /models: its primary and every loaded model with labels."""
    try:
        response = client.get(url.rstrip("/") + "/models", timeout=5)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ReplayError(f"cannot read the served models from {url}/models: {exc}") from exc


def check_labels(rows, catalog: dict, source: str) -> None:
    """Every true label to be sent is one the primary model can predict (else /feedback
    would refuse it): one clear error before any traffic."""
    primary = next(m for m in catalog["models"] if m["name"] == catalog["primary"])
    unknown = sorted(set(rows["label"]) - set(primary["labels"]))
    if unknown:
        raise ReplayError(
            f"{source}: labels {unknown[:5]} are not labels of the served model "
            f"{primary['name']!r} ({sorted(primary['labels'])})"
        )


def _check_reachable(client: httpx.Client, url: str, path: str, what: str) -> None:
    try:
        response = client.get(url.rstrip("/") + path, timeout=5)
    except httpx.HTTPError as exc:
        raise ReplayError(f"cannot reach the {what} at {url}: {exc}") from exc
    if response.status_code != 200:
        raise ReplayError(
            f"the {what} at {url} is not ready: {path} answered {response.status_code}"
        )


def _sample(status: dict) -> dict:
    """The parts of a monitor /status the timeline keeps."""
    models = {}
    for name, window in status.get("models", {}).items():
        drift = window.get("drift") or {}
        embedding = drift.get("embedding") or {}
        bound = window.get("accuracy_bound") or {}
        models[name] = {
            "rows": window["rows"],
            "drift_share": drift.get("drift_share"),
            "dataset_drift": drift.get("dataset_drift"),
            "embedding_drift": embedding.get("score"),
            "embedding_drifted": embedding.get("drifted"),
            "live_accuracy": window["live"]["accuracy"],
            "labeled": window["live"]["labeled"],
            "estimated_accuracy": window["estimated_accuracy"],
            "reference_accuracy": window["reference_accuracy"],
            # Every label-free estimator: on all window rows, and its error against live
            # accuracy on the same (labeled) rows; the headline's error; the label-shift verdict.
            "headline_estimator": window.get("headline_estimator"),
            "estimation_error": window.get("estimation_error"),
            "estimates": {k: v["estimate"] for k, v in window.get("estimates", {}).items()},
            "estimation_errors": {k: v["error"] for k, v in window.get("estimates", {}).items()},
            # The lower bound (monitoring/bounds.py): what it rests on, the label-free one,
            # and the corrected estimate once enough rows are labeled.
            "accuracy_bound": bound.get("value"),
            "bound_basis": bound.get("basis"),
            "label_free_bound": bound.get("label_free"),
            "corrected_accuracy": (bound.get("corrected") or {}).get("estimate"),
            "bound_confidence_term": bound.get("confidence_term"),
            "bound_peer_term": (bound.get("peer_term") or {}).get("value"),
            "bound_peer": (bound.get("peer_term") or {}).get("peer"),
            "label_shift": (window.get("label_shift") or {}).get("detected"),
            "label_shift_distance": (window.get("label_shift") or {}).get("distance"),
        }
    return {"last_computation": status.get("last_computation"), "models": models}


def run_replay(config: ReplayConfig, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Run one scenario against the live stack; returns the timeline (JSON-ready)."""
    rows, onset = replay_traffic(config)
    rng = np.random.default_rng(config.seed)
    labelled = rng.random(len(rows)) < config.label_coverage
    client = httpx.Client(timeout=30)
    _check_reachable(client, config.url, "/readyz", "service")
    catalog = served_models(client, config.url)
    check_labels(rows, catalog, config.data or f"scenario {config.scenario}")
    if config.monitor_url:
        _check_reachable(client, config.monitor_url, "/healthz", "monitor")
    prefix = f"{config.scenario}-{config.seed}-{time.time_ns() % 10**9}"
    status_before = client.get(config.monitor_url + "/status").json() if config.monitor_url else {}

    samples, pending_labels = [], deque()
    sent = labels_sent = correct_after = answered_after = 0
    started = time.monotonic()
    next_poll = started
    for start in range(0, len(rows), config.batch):
        chunk = rows.iloc[start : start + config.batch]
        due = started + (start // config.batch) / config.rate
        time.sleep(max(0.0, due - time.monotonic()))
        instances = [
            {"text": r.text, "domain": r.domain, "request_id": f"{prefix}-{start + k}"}
            for k, r in enumerate(chunk.itertuples())
        ]
        response = client.post(config.url.rstrip("/") + "/predict", json={"instances": instances})
        if response.status_code != 200:
            raise ReplayError(f"/predict answered {response.status_code}: {response.text[:300]}")
        now = time.monotonic()
        for k, answer in enumerate(response.json()):
            index = start + k
            if index >= onset:
                answered_after += 1
                correct_after += int(answer["label"] == rows.iloc[index]["label"])
            if labelled[index]:
                pending_labels.append(
                    (now + config.label_delay, answer["request_id"], rows.iloc[index]["label"])
                )
        sent += len(chunk)
        labels_sent += _send_due_labels(client, config.url, pending_labels, now)
        if config.monitor_url and now >= next_poll:
            samples.append(_poll(client, config, sent, onset, now - started))
            next_poll = now + config.poll_seconds
        if on_progress:
            on_progress(sent, len(rows))

    while pending_labels:  # the last labels, after their delay
        time.sleep(max(0.0, pending_labels[0][0] - time.monotonic()))
        labels_sent += _send_due_labels(client, config.url, pending_labels, time.monotonic())
    final = {}
    if config.monitor_url:
        final = _settle(client, config, status_before, sent, labels_sent, samples, onset, started)
    return {
        "config": asdict(config),
        "models": catalog["models"],  # name, architecture, role of every served model
        "onset_index": onset,
        "sent": sent,
        "labels_sent": labels_sent,
        "primary_accuracy_after_onset_from_responses": correct_after / answered_after
        if answered_after
        else None,
        "samples": samples,
        "final": final,
        "seconds": time.monotonic() - started,
    }


def _send_due_labels(client: httpx.Client, url: str, pending: deque, now: float) -> int:
    batch = []
    while pending and pending[0][0] <= now and len(batch) < 512:
        _, request_id, label = pending.popleft()
        batch.append({"request_id": request_id, "label": label})
    if batch:
        response = client.post(url.rstrip("/") + "/feedback", json={"labels": batch})
        if response.status_code != 200:
            raise ReplayError(f"/feedback answered {response.status_code}: {response.text[:300]}")
    return len(batch)


def _poll(
    client: httpx.Client, config: ReplayConfig, sent: int, onset: int, elapsed: float
) -> dict:
    status = client.get(config.monitor_url + "/status").json()
    return {"elapsed": elapsed, "sent": sent, "after_onset": sent > onset, **_sample(status)}


def _settle(
    client, config, before: dict, sent: int, labels: int, samples: list, onset: int, started: float
) -> dict:
    """Wait until the monitor has ingested everything sent and recomputed; return its last word."""
    base = before.get("counters", {})
    target = base.get("events_prediction", 0) + base.get("events_label", 0) + sent + labels
    deadline = time.monotonic() + config.settle_seconds
    while True:
        status = client.get(config.monitor_url + "/status").json()
        counters = status["counters"]
        ingested = counters.get("events_prediction", 0) - base.get("events_prediction", 0)
        joined = counters.get("labels_matched", 0) - base.get("labels_matched", 0)
        if status.get("computed_events", 0) >= target:  # the last computation saw every event
            break
        if time.monotonic() > deadline:
            log.warning(
                "monitor did not catch up in %.0f s (%d/%d predictions)",
                config.settle_seconds,
                ingested,
                sent,
            )
            break
        time.sleep(0.3)
    samples.append(
        {
            "elapsed": time.monotonic() - started,
            "sent": sent,
            "after_onset": True,
            **_sample(status),
        }
    )
    return {
        "predictions_ingested": ingested,
        "labels_joined": joined,
        "window_size": status.get("window_size"),
        **_sample(status),
    }
