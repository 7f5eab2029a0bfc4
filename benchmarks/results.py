"""What each benchmark measured, as its renderer (benchmarks/render/) reads it, and the names
both sides share: engines, server configurations, budgets. Light on purpose: rendering a
result needs neither torch nor BentoML."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.timing import RepetitionBudget, Timing
from shiftwatch.settings import ServiceSettings

if TYPE_CHECKING:
    from benchmarks.ingest_bench import IngestPass
    from benchmarks.live_service import Alternation, Cell
    from benchmarks.machine import Environment
    from benchmarks.monitor_events import WriterPass
    from benchmarks.ort_profile import OpProfile
    from benchmarks.redis_bench import RedisRun
    from training.config import Profile
    from training.model import ModelConfig

# --- inference (bench_inference) -------------------------------------------------------------

TORCH, FP32, INT8 = "torch eager", "ORT fp32", "ORT int8"
TARGET_CELL = (1, 128)  # (batch, seq) of DESIGN.md's speed targets


@dataclass(frozen=True)
class InferenceRun:
    """Everything one inference benchmark run measured, ready to be written up."""

    command: str  # how this run was started, flags included
    variant: str
    run_dir: Path
    config: ModelConfig
    threads: int
    budget: RepetitionBudget
    rounds: int  # interleaved rounds per cell, the budget split over them
    quick: bool
    gemm_peak_gflops: float
    timings: dict[tuple[int, int, str], Timing]  # (batch, seq, engine) -> latencies
    op_profiles: dict[str, OpProfile]  # ORT engine -> kernel time by operator, target cell
    skipped_lengths: list[int]  # over the run's max_positions
    other_load_cores: float | None  # cores other processes used meanwhile; None if unknown
    wall_s: float
    environment: Environment  # versions: torch, onnxruntime
    int8_accuracy: dict | None  # the bundle's recorded per-set int8 accuracy, if it has one
    int8_source: str  # where that came from, or why there is none


# --- service (bench_service) -----------------------------------------------------------------

CLIENTS = (1, 8, 32)
REQUEST_SCALE = {1: 1, 8: 3, 32: 6}  # timed requests per cell, in multiples of --requests
STREAM_PREFIX = "bench"  # the redis transport's streams: bench:predictions:<primary>
DEFAULT_SHADOWS: list[str] = ServiceSettings.model_fields["shadow_models"].default_factory()


@dataclass(frozen=True)
class LoadBudget:
    """How much load each cell gets: bounded by a request count and by time."""

    warmup_requests: int  # per server, untimed, from 8 clients, before any cell
    requests: int  # timed requests of a one-client cell (x REQUEST_SCALE with more clients)
    seconds: float  # no new request starts in a cell once this much of its time is spent
    rounds: int  # each cell's requests and time are split over this many interleaved rounds
    raw: RepetitionBudget  # bare session.run, per round
    # The event transports' cost, one client: blocks of this many timed requests to each of
    # the three servers in turn (each block after one untimed request), this many cycles.
    transport_block: int
    transport_cycles: int


@dataclass(frozen=True)
class ServerConfig:
    """One server configuration: the default deployment or one feature of it off."""

    name: str
    batching: bool
    event_log: bool
    shadows: bool
    transport: str = "file"  # SHIFTWATCH_EVENT_TRANSPORT, when the event log is on
    bare: bool = False  # benchmarks/bare_server.py instead of the service

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_")

    @property
    def event_log_label(self) -> str:
        return self.transport if self.event_log else "off"


DEFAULT = ServerConfig("default", batching=True, event_log=True, shadows=True)
REDIS = replace(DEFAULT, name="redis transport", transport="redis")
UNBATCHED = ServerConfig("batching off", batching=False, event_log=True, shadows=True)
NO_EVENT_LOG = ServerConfig("event log off", batching=True, event_log=False, shadows=True)
NO_SHADOWS = ServerConfig("no shadows", batching=True, event_log=True, shadows=False)
BARE = ServerConfig("bare server", batching=False, event_log=False, shadows=False, bare=True)
CONFIGS = (DEFAULT, REDIS, UNBATCHED, NO_EVENT_LOG, NO_SHADOWS, BARE)
TRANSPORTS = (DEFAULT, REDIS)  # each measured against NO_EVENT_LOG
TRANSPORT_SERVERS = (*TRANSPORTS, NO_EVENT_LOG)
ALTERNATED = (*TRANSPORT_SERVERS, NO_SHADOWS, BARE)  # in `alternate`'s order
ANCHOR = (BARE, NO_SHADOWS, DEFAULT)  # the anchor table's rows


@dataclass(frozen=True)
class ServiceRun:
    """Everything one service benchmark run measured, ready to be written up."""

    command: str  # how this run was started, flags included
    quick: bool
    budget: LoadBudget
    settings: ServiceSettings  # the caller's environment: batching numbers and threads
    max_tokens: int
    model_tags: dict[str, str]  # variant -> store tag, the primary first
    provider: str  # onnxruntime execution provider of the bare session
    request: str  # what one request holds
    raw: Timing  # bare session.run of the primary, batch 1
    livez: Cell  # GET /livez, one client, on the no-shadows server
    cells: dict[tuple[str, int], Cell]
    transports: Alternation  # ALTERNATED's servers in blocks, one client
    servers: dict[str, dict]  # configuration -> what its server did (render.service.server_rows)
    redis: dict  # the redis transport's server: version, streams' lengths, CPU while measured
    other_load_cores: float | None  # used by all but this process, its servers and redis-server
    wall_s: float
    environment: Environment  # versions: bentoml, onnxruntime, httpx, uvicorn
    stages: dict[str, Timing] = field(default_factory=dict)  # benchmarks/stage_budget.py


# --- monitor (bench_monitor) -----------------------------------------------------------------


@dataclass(frozen=True)
class MonitorRun:
    """Everything one monitor benchmark run measured, and the monitor defaults it ran with."""

    environment: Environment
    wall_s: float
    other_load_cores: float | None  # all but this process and its redis-server
    bundle: Path  # whose reference the drift window resamples
    reference_rows: int
    window: int  # rows of the drift window
    drift_s: list[float]  # compute_drift, per repeat
    estimates_s: list[float]  # every label-free estimator on the same window, per repeat
    compute_s: list[float]  # Monitor.compute over the ingested state: every model's window
    predictions: int  # prediction events ingested, each followed by its label
    labels: int
    models: list[str]  # the primary, then the shadows whose outputs ride in its events
    prediction_json_bytes: float  # mean JSON size of one prediction event
    label_json_bytes: float
    file_writer: WriterPass  # the file transport's writer filling the segment ingested
    file_passes: list[IngestPass]  # timed file ingest passes
    file_profile: IngestPass  # one more file pass, its parts timed
    redis: RedisRun
    state_dir: str  # where the passes' SQLite states lived
    read_count: int  # XREADGROUP count per stream (the monitor's default)
    retention_s: float  # label retention (the monitor's default)
    state_bounds: list[tuple[str, str, float]]  # (keyword, MonitorSettings field, default)
    state_max_bytes: int | None  # the state's size bound, where the monitor has one
    max_len: int  # the streams' MAXLEN (the service's default)
    stream_prefix: str
    single_writes: int  # one-event writes timed per transport

    @property
    def events(self) -> int:
        return self.predictions + self.labels


# --- soak (bench_soak) -----------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSample:
    """The monitor at one simulated hour."""

    hour: float
    requests: int  # written so far
    ingested: int  # prediction and label events the monitor has counted
    state_bytes: int  # SQLite file and write-ahead log on disk
    resident_bytes: int  # the monitor process's RSS
    labels_joined: int
    predictions_dropped: int  # evicted or expired
    labels_unmatched: int  # unmatched or evicted
    events_lost: int


@dataclass(frozen=True)
class SoakRun:
    environment: Environment
    wall_s: float
    hours: float  # simulated
    rate: float  # requests per simulated second
    labeled: float  # share of requests labeled
    label_delay_s: float  # simulated seconds from a prediction to its label
    max_ahead_events: int  # the writer waits while the monitor is further behind
    requests: int
    written: int  # events
    samples: list[SoakSample]


# --- estimation (bench_estimation; records saved as JSON) ------------------------------------

ESTIMATION_EVENTS, ESTIMATION_RATE, ESTIMATION_WINDOW = 1600, 80.0, 400
# (label coverage, label delay in seconds, traffic seed) of each run. Every request labeled
# 0.5 s late (40 of the window's 400 rows unlabeled when the traffic ends), three seeds: the
# label-free bound against live accuracy in every window, every estimator's error. A fifth
# of requests labeled 10 s late (no label in the window when the traffic ends: the bound is
# label-free until they come), three seeds: the corrected estimate. A twentieth, one seed.
ESTIMATION_RUNS = (
    (1.0, 0.5, 0),
    (1.0, 0.5, 1),
    (1.0, 0.5, 2),
    (0.2, 10.0, 0),
    (0.2, 10.0, 1),
    (0.2, 10.0, 2),
    (0.05, 10.0, 0),
)


# --- reproduction (bench_reproduction) -------------------------------------------------------


@dataclass(frozen=True)
class RunTiming:
    """One training run of the reproduction."""

    variant: str
    seed: str
    epochs: int
    seconds: float
    test_accuracy: float
    mean_shift_accuracy: float  # over every evaluation set but `test`


@dataclass(frozen=True)
class ReproductionRun:
    profile: Profile
    dataset_slug: str
    dataset_source: str
    training_rows: int
    variants: int
    training_s: float  # of the wall time, training every run
    runs: list[RunTiming]
    wall_s: float
    other_load_cores: float | None
    environment: Environment  # versions: torch


# --- images (bench_images) -------------------------------------------------------------------


@dataclass(frozen=True)
class ImagesRun:
    machine: str
    other_load_cores: float | None  # in the 3 s before anything started
    engine: str  # podman or docker
    base_image: str  # "" for the default base
    serving_image: str
    monitor_image: str
    sizes_mb: dict[str, float]  # image -> size
    build_s: float | None  # None with --no-build
    trials: int
    service_start_s: list[float]  # `run` to first 200, per trial
    monitor_start_s: list[float]
    host_start_s: float  # the same Bento served on the host
    cycles: int  # alternation cycles of 20 requests
    p50_ms: tuple[float, float]  # container, host
    failures: tuple[int, int]  # container, host
