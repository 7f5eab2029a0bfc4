"""The service's Prometheus series (prefix shiftwatch_, base units, bounded labels).

prometheus_client directly (BentoML 1.4 deprecates `bentoml.metrics`): the
worker runs in BentoML's Prometheus multiprocess mode, so these series appear on
the service's own /metrics beside BentoML's.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Measured session.run times run from ~0.2 ms (batch 1, short) to ~1 s (batch 128 x 512).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)

predictions = Counter(
    name="shiftwatch_predictions_total",
    documentation="Predictions by model (primary and shadows) and predicted class.",
    labelnames=["model", "predicted_class"],
)
confidence = Histogram(
    name="shiftwatch_prediction_confidence",
    documentation="Max class probability of each prediction.",
    labelnames=["model"],
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
input_length = Histogram(
    name="shiftwatch_input_length_tokens",
    documentation="Token ids per served sequence (the answering model's tokenizer).",
    buckets=(1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512),
)
input_oov_share = Histogram(
    name="shiftwatch_input_oov_share",
    documentation="Share of a served sequence's token ids that are the unknown token.",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
)
input_long_words = Counter(
    name="shiftwatch_input_long_words_total",
    documentation="Words of more than 100 characters in served sequences, clipped to 100.",
)
input_truncated = Counter(
    name="shiftwatch_input_truncated_total",
    documentation="Sequences cut at a model's positional limit, by model.",
    labelnames=["model"],
)
rejected = Counter(
    name="shiftwatch_requests_rejected_total",
    documentation="Requests answered 4xx, by endpoint and reason.",
    labelnames=["endpoint", "reason"],
)
inference_seconds = Histogram(
    name="shiftwatch_inference_seconds",
    documentation="Seconds per onnxruntime session.run, by model.",
    labelnames=["model"],
    buckets=LATENCY_BUCKETS,
)
batch_size = Histogram(
    name="shiftwatch_inference_batch_size",
    documentation="Sequences per call of the batched predict function.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
event_log_events = Counter(
    name="shiftwatch_event_log_events_total",
    documentation="Events handed to the event log, by type.",
    labelnames=["type"],
)
event_log_write_errors = Counter(
    name="shiftwatch_event_log_write_errors_total",
    documentation="Events the log could not write, by reason (io_error, transport_error, "
    "queue_full, shutdown).",
    labelnames=["reason"],
)
# Every reason exists at 0 from start-up, so a panel has data and an alert sees the first error.
for _reason in ("io_error", "transport_error", "queue_full", "shutdown"):
    event_log_write_errors.labels(reason=_reason)
# Gauges in BentoML's multiprocess mode: one value per live worker, combined as stated.
event_log_queue = Gauge(
    name="shiftwatch_event_log_queue_events",
    documentation="Events waiting for the event log's writer (all workers).",
    multiprocess_mode="livesum",
)
event_transport_up = Gauge(
    name="shiftwatch_event_transport_up",
    documentation="1 while the event transport is reachable, 0 while events are buffered "
    "(the lowest of the workers).",
    labelnames=["backend"],
    multiprocess_mode="livemin",
)
shadow_skipped = Counter(
    name="shiftwatch_shadow_skipped_total",
    documentation="Sequences whose shadow models did not run, by reason (saturated: the "
    "shadow worker's queue was full; shutdown: still waiting when the service stopped; error: "
    "a shadow raised). Their prediction events name the shadows in skipped_shadows.",
    labelnames=["reason"],
)
for _reason in ("saturated", "shutdown", "error"):
    shadow_skipped.labels(reason=_reason)
shadow_queue = Gauge(
    name="shiftwatch_shadow_queue_sequences",
    documentation="Answered sequences waiting for the shadow models (all workers).",
    multiprocess_mode="livesum",
)
feedback_labels = Counter(
    name="shiftwatch_feedback_labels_total",
    documentation="Labels received on /feedback: accepted (first for the request) or duplicate.",
    labelnames=["result"],
)
# /predict and /feedback are served ahead of BentoML's API layer (service/routes.py), so its
# bentoml_service_request_* series do not see them; these take their place, same labels.
# service_name is BentoML's service name, as on its series: alerts group by it.
http_requests = Counter(
    name="shiftwatch_http_requests_total",
    documentation="Requests to /predict and /feedback, by endpoint and response status.",
    labelnames=["service_name", "endpoint", "http_response_code"],
)
http_request_seconds = Histogram(
    name="shiftwatch_http_request_duration_seconds",
    documentation="Seconds from a request's arrival to its answer, by endpoint and status.",
    labelnames=["service_name", "endpoint", "http_response_code"],
    buckets=LATENCY_BUCKETS,
)
http_in_progress = Gauge(
    name="shiftwatch_http_requests_in_progress",
    documentation="Requests to /predict and /feedback being served (all workers).",
    labelnames=["service_name", "endpoint"],
    multiprocess_mode="livesum",
)
