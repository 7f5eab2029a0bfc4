"""Settings of the long-running processes, read from the environment (prefix SHIFTWATCH_).

`SharedSettings` holds what the service and the monitor must agree on (the models, the event
transport and where it writes), defined once: the service's settings extend it, and the
monitor's own variables (SHIFTWATCH_MONITOR_*, `MonitorSettings`) default to it. Each limit has a documented
default; the README's "Limits" table lists them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shiftwatch.names import split_model_ref


class FeedbackAccessError(ValueError):
    """Neither a usable /feedback token nor the explicit open setting: the service must not
    start (one line, naming the settings)."""


def read_secret_file(path: Path, what: str) -> str:
    """A secret's value from its file (a compose secret, a mounted Kubernetes Secret): the
    whole file, without the trailing newline an editor or `echo` adds. Empty is an error."""
    try:
        value = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"{what}: {path} is empty")
    return value


def url_with_password(url: str, password_file: Path | None) -> str:
    """`url` with the password read from `password_file` (percent-encoded), or unchanged."""
    if password_file is None:
        return url
    password = quote(read_secret_file(password_file, "redis_password_file"), safe="")
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def comma_list(value: object) -> object:
    """An environment variable's comma-separated list as a list (other values unchanged)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class SharedSettings(BaseSettings):
    """What the service and the monitor beside it share: one image, one environment."""

    model_config = SettingsConfigDict(env_prefix="SHIFTWATCH_", extra="ignore")

    # Models are bundles in the BentoML model store, by name (`name`, or `name:version` to pin
    # one version; default the latest). The primary answers requests that name no model.
    primary_model: str = "baseline"
    # Run on the primary's traffic; their outputs go to the event log only.
    shadow_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["research", "no_pe"]
    )

    # Where events go: `file`, JSON-lines segments in event_log_dir (one machine); `redis`,
    # Redis Streams (a fleet of replicas and one monitor per model shard; deploy/README.md).
    event_transport: Literal["file", "redis"] = "file"
    event_log_dir: Path = Path("artifacts/events")
    # Redis Streams: `<prefix>:predictions:<answering model>` and `<prefix>:labels`.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A file holding Redis's password (a compose secret, a mounted Kubernetes Secret), put into
    # redis_url when the settings are read: the password stays out of the environment and off
    # every command line. Unset: the URL's own password, if any.
    redis_password_file: Path | None = None
    redis_stream_prefix: str = Field("shiftwatch", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    @model_validator(mode="after")
    def _redis_password(self) -> SharedSettings:
        self.redis_url = url_with_password(self.redis_url, self.redis_password_file)
        return self

    @field_validator("shadow_models", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("primary_model")
    @classmethod
    def _valid_primary(cls, value: str) -> str:
        split_model_ref(value)
        return value

    @field_validator("shadow_models")
    @classmethod
    def _valid_shadows(cls, value: list[str]) -> list[str]:
        for ref in value:
            split_model_ref(ref)
        return list(dict.fromkeys(value))

    @property
    def model_refs(self) -> dict[str, str]:
        """Every model the service loads, name -> store tag: the primary first, then shadows."""
        refs = {}
        for ref in (self.primary_model, *self.shadow_models):
            name, version = split_model_ref(ref)
            refs.setdefault(name, f"{name}:{version}")
        return refs

    @property
    def models(self) -> list[str]:
        """The names of every model the service loads: the primary first, then the shadows."""
        return list(self.model_refs)

    @property
    def primary_name(self) -> str:
        return split_model_ref(self.primary_model)[0]


class ServiceSettings(SharedSettings):
    """The serving process: request limits, batching, threads, the event log's writer."""

    # Shadows run after the answer, on one background thread; beyond this many answered
    # sequences waiting for them, new ones are logged with their shadows skipped (counted).
    shadow_queue: int = Field(1024, ge=1)
    # The shadow process's niceness (service/shadow_process.py): it takes the CPU the answers
    # leave; under a saturated CPU its queue fills and shadows are skipped (counted).
    shadow_nice: int = Field(19, ge=0, le=19)
    # Serving processes (BentoML workers), each with its own batcher, shadow process and event
    # writer; SHIFTWATCH_MAX_CONCURRENCY is shared among them (docs/benchmarks.md: workers).
    workers: int = Field(1, ge=1)

    max_instances: int = Field(64, ge=1)  # sequences in one /predict request
    # Whitespace-separated words in one sequence (a request-size bound; a model's tokenizer
    # may make more or fewer ids of them, cut at its positional limit and counted).
    max_tokens: int = Field(512, ge=1)
    max_text_chars: int = Field(16384, ge=1)  # characters in one `text` (or `tokens` joined)
    max_id_chars: int = Field(128, ge=1)  # characters in request_id and domain
    max_feedback_items: int = Field(1024, ge=1)  # labels in one /feedback request
    max_body_bytes: int = Field(1_048_576, ge=1024)  # request body, enforced before parsing (413)

    batching: bool = True  # adaptive batching of /predict across concurrent requests
    max_batch_size: int = Field(128, ge=1)  # instances per adaptive batch (>= max_instances)
    # A request that waited longer than this in the batch queue is answered 503 (the service is
    # overloaded: service/batcher.py).
    max_latency_ms: int = Field(1000, ge=1)
    inference_batch: int = Field(32, ge=1)  # sequences per session.run, grouped by length
    # Requests to /predict and /feedback handled at once (each worker takes its share, rounded
    # up); beyond it 429 at once
    # ("Too many requests"), /livez /readyz /metrics exempt (service/routes.py). Together with
    # the 503 of the batch queue (max_latency_ms) and the request timeout (504), an overload
    # is refused quickly instead of queueing without bound.
    max_concurrency: int = Field(32, ge=1)
    request_timeout_seconds: float = Field(30.0, gt=0)  # answered 504 past this
    # On SIGTERM: /readyz answers 503 at once while requests are still served for at most this
    # long (so a load balancer stops routing here), then in-flight requests finish and the
    # process exits. SIGINT (Ctrl-C) skips the wait. 0: no wait.
    shutdown_drain_seconds: float = Field(5.0, ge=0)
    # The drain ends early once no /predict or /feedback has arrived for this long: routing has
    # stopped (or there was no traffic), so an idle service exits in about 2 s. A request that
    # reaches a balancer still routing here afterwards finds the port closed: HAProxy
    # (deploy/haproxy: retries, redispatch) and ingress-nginx send it to another replica.
    shutdown_quiet_seconds: float = Field(2.0, ge=0)

    intra_op_threads: int = Field(1, ge=1)  # onnxruntime threads per session.run
    inter_op_threads: int = Field(1, ge=1)
    prefer_gpu: bool = True  # CUDA provider when onnxruntime-gpu and a GPU are present

    event_log_enabled: bool = True
    event_log_segment_bytes: int = Field(16 * 2**20, ge=4096)  # roll to a new file past this
    event_log_max_bytes: int = Field(256 * 2**20, ge=8192)  # delete oldest files past this total
    event_log_queue: int = Field(
        10_000, ge=1
    )  # events waiting for the writer; beyond: dropped, counted
    # Each Redis stream is trimmed to about redis_max_len entries (XADD MAXLEN ~): a monitor
    # further behind than that loses the oldest entries (its lag alert fires long before).
    redis_max_len: int = Field(200_000, ge=1000)
    feedback_dedup_window: int = Field(100_000, ge=1)  # request ids remembered to count duplicates

    # /feedback needs "Authorization: Bearer <token>": the token itself, or a file holding it
    # (a compose secret, a mounted Kubernetes Secret). Without either, the service refuses to
    # start unless feedback_open is true: an empty token is an error, never "no check".
    feedback_token: SecretStr | None = None
    feedback_token_file: Path | None = None
    # Serve /feedback without a token: the local demo, `shiftwatch serve` and the tests' servers
    # on loopback set it; no deploy file does.
    feedback_open: bool = False

    def feedback_access(self) -> str | None:
        """The bearer token /feedback requires, or None when it is explicitly open.

        Raises:
            FeedbackAccessError: no token and not explicitly open, an empty token, a token
                file that cannot be read, or both a token and a token file.
        """
        hint = (
            "set SHIFTWATCH_FEEDBACK_TOKEN or SHIFTWATCH_FEEDBACK_TOKEN_FILE "
            "(or SHIFTWATCH_FEEDBACK_OPEN=true for a local demo)"
        )
        if self.feedback_token is not None and self.feedback_token_file is not None:
            raise FeedbackAccessError(
                "/feedback: SHIFTWATCH_FEEDBACK_TOKEN and SHIFTWATCH_FEEDBACK_TOKEN_FILE are "
                "both set; set one"
            )
        if self.feedback_token_file is not None:
            try:
                return read_secret_file(self.feedback_token_file, "SHIFTWATCH_FEEDBACK_TOKEN_FILE")
            except ValueError as exc:
                raise FeedbackAccessError(f"/feedback: {exc}") from None
        if self.feedback_token is not None:
            token = self.feedback_token.get_secret_value()
            if not token.strip():
                raise FeedbackAccessError(f"/feedback: SHIFTWATCH_FEEDBACK_TOKEN is empty; {hint}")
            return token
        if self.feedback_open:
            return None
        raise FeedbackAccessError(f"/feedback: no token configured; {hint}")


def _shared(field: str):
    """A default taken from the variable the service reads too (one image, one environment)."""
    return lambda: getattr(SharedSettings(), field)


def served_models() -> list[str]:
    """The models the service beside this monitor is configured with (SHIFTWATCH_PRIMARY_MODEL
    and SHIFTWATCH_SHADOW_MODELS), as store tags."""
    return list(SharedSettings().model_refs.values())


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIFTWATCH_MONITOR_", extra="ignore")

    # The service's transport: by default SHIFTWATCH_EVENT_TRANSPORT, SHIFTWATCH_EVENT_LOG_DIR
    # and SHIFTWATCH_REDIS_*, which the service reads too (shiftwatch/settings.py).
    event_transport: Literal["file", "redis"] = Field(default_factory=_shared("event_transport"))
    event_log_dir: Path = Field(default_factory=_shared("event_log_dir"))
    redis_url: str = Field(default_factory=_shared("redis_url"))
    # As the service's (SharedSettings.redis_password_file), for a URL of the monitor's own.
    redis_password_file: Path | None = Field(default_factory=_shared("redis_password_file"))
    redis_stream_prefix: str = Field(
        default_factory=_shared("redis_stream_prefix"), pattern=r"^[A-Za-z0-9_.:-]{1,64}$"
    )
    # The consumer group: one per monitor shard (shards monitor disjoint models).
    redis_group: str = Field("shiftwatch-monitor", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    redis_read_count: int = Field(1000, ge=1)  # stream entries per read (and per transaction)
    state_path: Path = Path("artifacts/monitor/state.sqlite")
    # Where bundles (reference windows) come from: a folder of <name>/ bundles, or, when
    # unset, the BentoML model store (`name` for the latest version, or `name:version`).
    models_dir: Path | None = None
    # The models to monitor, names of bundles (`name` or `name:version`); default: the
    # service's primary and shadows, read from their own variables.
    models: Annotated[list[str], NoDecode] = Field(default_factory=served_models)
    host: str = "127.0.0.1"
    port: int = 3002

    window_size: int = Field(1000, ge=10)  # most recent prediction events per model
    window_seconds: float = Field(3600.0, gt=0)  # and no older than this (event time)
    recompute_seconds: float = Field(10.0, gt=0)  # recompute at least this often...
    recompute_events: int = Field(200, ge=1)  # ...or after this many new events
    poll_seconds: float = Field(0.5, gt=0)  # how often the event log is read
    # Label-free estimates and the label-shift verdict need this many window rows (and the
    # error against live accuracy this many labeled ones): at 100 rows a binomial accuracy
    # has a standard error of at most 5 points.
    min_estimate_rows: int = Field(100, ge=10)
    # The corrected estimate (monitoring/bounds.py) needs this many labeled window rows; from
    # then on the exported lower bound is the corrected one.
    min_correction_labels: int = Field(30, ge=2)
    # Accuracy the team promises: exported as shiftwatch_accuracy_slo_ratio, and the alert
    # ShiftwatchAccuracyBelowSLO fires while a model's lower bound stays below it. Unset: no
    # series, no alert.
    accuracy_slo: float | None = Field(None, gt=0, le=1)
    label_retention_seconds: float = Field(86400.0, gt=0)  # unlabeled predictions expire after this
    # ...or sooner, oldest first and counted, when the state outgrows these bounds. The bytes
    # are the database's pages in use; its write-ahead log adds at most ~8 MiB after each
    # checkpoint. 128 MiB is half the manifests' 256Mi monitor-state volume. At the measured
    # ~1.5 KB a request (a primary and two shadows; docs/benchmarks.md, soak, measured before
    # embeddings were stored as float32 bytes: less now), the bytes bind
    # first: about 90,000 requests, so labels later than that many requests find no prediction.
    state_max_requests: int = Field(250_000, ge=100)
    state_max_bytes: int = Field(128 * 2**20, ge=2**20)
    # Labels whose prediction has not arrived wait under their own bound: beyond it the first
    # arrived go first (counted), and over the byte bound they go before any prediction, so a
    # flood of labels for ids never served evicts no prediction. Legitimate ones wait seconds
    # (the label stream read ahead of a prediction stream) or belong to another monitor
    # shard's requests. ~300 bytes a row (id, label, time, two indexes): ~15 MB at the bound.
    state_max_orphan_labels: int = Field(50_000, ge=100)
    # Event timestamps further ahead of this monitor's clock are clamped to it (and counted):
    # one writer's bad clock must not move the windows' "now" into the future.
    max_clock_skew_seconds: float = Field(300.0, gt=0)
    # The join rule's slack: a label joins only a prediction stamped at most this long after
    # it (a prediction and its label may be stamped by two replicas, whose NTP-kept clocks
    # differ by milliseconds). A label posted earlier than that before its request was served
    # is a guess or a forgery: dropped and counted.
    label_join_skew_seconds: float = Field(5.0, ge=0)
    extra_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list
    )  # metric label values besides the reference's

    @model_validator(mode="after")
    def _redis_password(self) -> MonitorSettings:
        self.redis_url = url_with_password(self.redis_url, self.redis_password_file)
        return self

    @field_validator("models", "extra_domains", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("models")
    @classmethod
    def _valid_models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one model to monitor is required")
        for ref in value:
            split_model_ref(ref)
        return list(dict.fromkeys(value))


@lru_cache(maxsize=1)
def service_settings() -> ServiceSettings:
    """The process's settings, read from the environment once, on first use."""
    return ServiceSettings()
