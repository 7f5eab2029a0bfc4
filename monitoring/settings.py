"""Monitor settings from the environment (prefix SHIFTWATCH_MONITOR_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shiftwatch.names import split_model_ref
from shiftwatch.settings import SharedSettings, comma_list


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
    label_retention_seconds: float = Field(86400.0, gt=0)  # unlabeled predictions expire after this
    # ...or sooner, oldest first and counted, when the state outgrows these bounds. The bytes
    # are the database's pages in use; its write-ahead log adds at most ~8 MiB after each
    # checkpoint. 128 MiB is half the manifests' 256Mi monitor-state volume. At the measured
    # ~1.5 KB a request (a primary and two shadows; docs/benchmarks.md, soak, measured before
    # embeddings were stored as float32 bytes: less now), the bytes bind
    # first: about 90,000 requests, so labels later than that many requests find no prediction.
    state_max_requests: int = Field(250_000, ge=100)
    state_max_bytes: int = Field(128 * 2**20, ge=2**20)
    # Event timestamps further ahead of this monitor's clock are clamped to it (and counted):
    # one writer's bad clock must not move the windows' "now" into the future.
    max_clock_skew_seconds: float = Field(300.0, gt=0)
    extra_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list
    )  # metric label values besides the reference's

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
