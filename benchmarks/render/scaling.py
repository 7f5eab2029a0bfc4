"""docs/scaling.md's generated section: the fleet transport's measured limits, and what they
extrapolate to, from one `bench_monitor` run's numbers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks.render.markdown import markdown_table
from benchmarks.results import MonitorRun

LABEL_RATES = (0.0, 1.0)  # label events per served sequence: none, every one
SHARDS = (1, 2, 4, 8)  # monitors, each with a disjoint set of models


@dataclass(frozen=True)
class Measured:
    """What the extrapolations start from: one bench_monitor run's numbers (`measured_from`)."""

    date: str
    machine: str
    writer_rate: float  # events/s one EventLog + StreamWriter writer appends (batches of 512)
    writer_cores: float  # the writer process's CPU at that rate
    redis_write_cores: float  # redis-server's CPU at that rate
    ingest_rate: float  # events/s one monitor ingests from Redis: predictions and their labels
    prediction_rate: float  # the same, prediction stream alone
    orphan_label_rate: float  # the same, label stream alone (no prediction to join)
    file_ingest_rate: float  # events/s one monitor ingests from file segments (mixed)
    redis_read_cpu_prediction: float  # redis-server CPU s per prediction a monitor consumes
    redis_read_cpu_label: float  # the same per label
    prediction_entry_bytes: float  # Redis memory per prediction-stream entry (MEMORY USAGE)
    label_entry_bytes: float  # the same, label stream
    prediction_json_bytes: float  # one prediction event's JSON (primary + 2 shadows)
    state_bytes_per_sequence: float  # monitor SQLite state per ingested prediction + label
    max_len: int  # SHIFTWATCH_REDIS_MAX_LEN's default
    retention_s: float  # SHIFTWATCH_MONITOR_LABEL_RETENTION_SECONDS's default
    state_max_bytes: int | None  # SHIFTWATCH_MONITOR_STATE_MAX_BYTES's default (None: unbounded)

    @property
    def redis_write_cpu(self) -> float:
        """redis-server CPU seconds per appended event (either kind: the writer's mix)."""
        return self.redis_write_cores / self.writer_rate

    @property
    def monitor_prediction_s(self) -> float:
        return 1 / self.prediction_rate

    @property
    def monitor_matched_label_s(self) -> float:
        """A label that joins its prediction: the mixed pass's time per pair, less the
        prediction's (measured alone)."""
        return 2 / self.ingest_rate - self.monitor_prediction_s

    @property
    def monitor_orphan_label_s(self) -> float:
        return 1 / self.orphan_label_rate


def measured_from(run: MonitorRun) -> Measured:
    """The numbers of a monitor benchmark run that the extrapolations use."""
    redis = run.redis
    prediction_stream, label_stream = redis.lengths
    mixed = redis.ingest["mixed"]
    return Measured(
        date=run.environment.date,
        machine=", ".join(part.strip() for part in run.environment.machine.split(";")[:2]),
        writer_rate=redis.writer.rate,
        writer_cores=redis.writer.writer_cores,
        redis_write_cores=redis.writer.server_cores,
        ingest_rate=mixed.rate,
        prediction_rate=redis.ingest["predictions"].rate,
        orphan_label_rate=redis.ingest["labels"].rate,
        file_ingest_rate=statistics.median(p.rate for p in run.file_passes),
        redis_read_cpu_prediction=redis.ingest["predictions"].redis_cpu_per_event,
        redis_read_cpu_label=redis.ingest["labels"].redis_cpu_per_event,
        prediction_entry_bytes=redis.memory[prediction_stream] / run.predictions,
        label_entry_bytes=redis.memory[label_stream] / run.labels,
        prediction_json_bytes=run.prediction_json_bytes,
        state_bytes_per_sequence=statistics.median(p.state_bytes for p in mixed.passes)
        / run.predictions,
        max_len=run.max_len,
        retention_s=run.retention_s,
        state_max_bytes=run.state_max_bytes,
    )


def monitor_limit(m: Measured, label_rate: float, shards: int) -> float:
    """Sequences/s `shards` monitors keep up with, traffic spread evenly over their models.
    Each ingests 1/shards of the predictions with their labels, and every other label as an
    orphan (the label stream is read by all shards), at the per-kind costs measured."""
    own = (m.monitor_prediction_s + label_rate * m.monitor_matched_label_s) / shards
    foreign = label_rate * (shards - 1) / shards * m.monitor_orphan_label_s
    return 1 / (own + foreign)


def redis_limit(m: Measured, label_rate: float, shards: int) -> float:
    """Sequences/s one redis-server core carries: 1 + label_rate appends per sequence; each
    prediction read once, each label once per shard; CPU per append and per read as measured,
    assumed constant (batches as large as under load)."""
    appends = (1 + label_rate) * m.redis_write_cpu
    reads = m.redis_read_cpu_prediction + shards * label_rate * m.redis_read_cpu_label
    return 1 / (appends + reads)


def label_node_limit(m: Measured, label_rate: float, shards: int) -> float:
    """Redis Cluster: sequences/s the one node that holds the label stream carries (its
    appends, and every shard's reads)."""
    return 1 / (label_rate * (m.redis_write_cpu + shards * m.redis_read_cpu_label))


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _state_cell(m: Measured, sequences_per_s: float, label_rate: float) -> str:
    if m.state_max_bytes is None:
        return f"{sequences_per_s * m.retention_s * m.state_bytes_per_sequence / 1e9:,.0f} GB"
    if label_rate == 0:
        return "- (no labels)"
    seconds = m.state_max_bytes / m.state_bytes_per_sequence / sequences_per_s
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


def _limit(monitors: float, redis: float) -> str:
    return f"{_n(min(monitors, redis))} ({'monitors' if monitors < redis else 'Redis'})"


def render(run: MonitorRun) -> str:
    """The generated section of docs/scaling.md."""
    return render_measured(measured_from(run))


def render_measured(m: Measured) -> str:
    """The generated section of docs/scaling.md, from the numbers it starts from."""
    us = 1e6
    measured = [
        [
            "one Redis stream writer: a replica's EventLog + StreamWriter, batches of 512",
            f"{_n(m.writer_rate)} events/s appended",
            f"writer process {m.writer_cores:.2f} cores, redis-server {m.redis_write_cores:.2f} cores",
        ],
        [
            "redis-server CPU per appended event",
            f"{m.redis_write_cpu * us:.1f} µs",
            "predictions and labels alike (the writer's mix)",
        ],
        [
            "redis-server CPU per event a monitor consumes (XREADGROUP, XACK, XINFO)",
            f"{m.redis_read_cpu_prediction * us:.1f} µs per prediction, "
            f"{m.redis_read_cpu_label * us:.1f} µs per label",
            "streams read alone",
        ],
        [
            "one monitor, Redis ingest of predictions and their labels",
            f"{_n(m.ingest_rate)} events/s",
            "the DESIGN.md target's measure",
        ],
        [
            "one monitor, Redis ingest of predictions alone",
            f"{_n(m.prediction_rate)} events/s",
            f"{m.monitor_prediction_s * us:.0f} µs per prediction (with 2 shadows)",
        ],
        [
            "one monitor, Redis ingest of labels without their predictions",
            f"{_n(m.orphan_label_rate)} events/s",
            f"{m.monitor_orphan_label_s * us:.0f} µs per label; a label that joins its prediction: "
            f"{m.monitor_matched_label_s * us:.0f} µs (the mixed pass's time per pair less a "
            "prediction's)",
        ],
        [
            "one monitor, file ingest (the single-machine sidecar)",
            f"{_n(m.file_ingest_rate)} events/s",
            "same events as the mixed Redis pass",
        ],
        [
            "Redis memory per entry",
            f"{_n(m.prediction_entry_bytes)} B per prediction, "
            f"{_n(m.label_entry_bytes)} B per label",
            f"MEMORY USAGE / XLEN; a prediction event's JSON is {_n(m.prediction_json_bytes)} B",
        ],
        [
            "monitor state (SQLite) per ingested sequence",
            f"{_n(m.state_bytes_per_sequence)} B",
            "its prediction (3 model outputs) and label",
        ],
    ]
    traffic = []
    for label_rate in LABEL_RATES:
        monitor, redis = monitor_limit(m, label_rate, 1), redis_limit(m, label_rate, 1)
        bottleneck = min(monitor, redis)
        traffic.append(
            [
                f"{label_rate:.0%}",
                _n(m.writer_rate / (1 + label_rate)),
                _n(monitor),
                _n(redis),
                "the monitor" if monitor < redis else "Redis",
                f"{m.max_len / bottleneck / 60:,.1f} min",
                _state_cell(m, bottleneck, label_rate),
            ]
        )
    bottlenecks = "; ".join(f"{row[4]} at label rate {row[0]}" for row in traffic)
    shard_rows = []
    for shards in SHARDS:
        row: list[object] = [shards]
        for label_rate in LABEL_RATES:
            row.append(
                _limit(monitor_limit(m, label_rate, shards), redis_limit(m, label_rate, shards))
            )
        row.append(_n(label_node_limit(m, 1.0, shards)))
        shard_rows.append(row)
    stream_mb = m.max_len * m.prediction_entry_bytes / 1e6
    label_mb = m.max_len * m.label_entry_bytes / 1e6
    state_per_100 = 100 * m.retention_s * m.state_bytes_per_sequence / 1e9
    if m.state_max_bytes is None:
        state_column = "monitor state"
        state_note = (
            f"Monitor state: what its SQLite holds at that traffic with the default retention "
            f"({m.retention_s:,.0f} s; every prediction is kept that long)."
        )
        state_after = (
            f"The monitor state grows by {state_per_100:,.0f} GB per 100 sequences/s of traffic "
            "at the default retention. "
        )
    else:
        held = m.state_max_bytes / m.state_bytes_per_sequence
        state_column = "label delay the state holds"
        state_note = (
            f"Label delay the state holds: its default bound ({m.state_max_bytes / 2**20:,.0f} "
            f"MiB, about {held:,.0f} sequences at the measured size) over that traffic; a label "
            "later than this finds its prediction evicted (at 100 sequences/s it would be "
            f"{held / 100 / 60:,.0f} min)."
        )
        state_after = ""
    lines = [
        f"Generated by `python -m benchmarks.bench_monitor` (`make bench-monitor`) on {m.date} "
        f"({m.machine}); its measurements are in docs/benchmarks.md, section *Monitor: drift "
        "computation and ingest*. The first table is that run's measurements; every other "
        "number is arithmetic on them with its assumption stated: an extrapolation, not a "
        "measurement.",
        "",
        "### Measured",
        "",
        markdown_table(["what", "measured", "note"], measured),
        "",
        "### Fleet traffic one Redis and one monitor carry (extrapolated)",
        "",
        "A served sequence is 1 prediction event (its shadows' outputs ride in it) plus, when "
        "its label comes back through /feedback, 1 label event. One monitor: the per-kind "
        "ingest costs above. One Redis: one core of redis-server at the measured CPU per "
        "append and per consumed event (Redis executes commands on one thread). Time to "
        f"MAXLEN: how long a monitor may stop at that traffic before its oldest unread entries "
        f"are trimmed (MAXLEN {m.max_len:,} per stream). {state_note}",
        "",
        markdown_table(
            [
                "label rate",
                "one replica's writer (seq/s)",
                "one monitor (seq/s)",
                "one Redis (seq/s)",
                "bottleneck",
                "time to MAXLEN",
                state_column,
            ],
            traffic,
        ),
        "",
        f"Bottleneck of one Redis and one monitor: {bottlenecks}. "
        "The writer is per replica (each has its own), so it limits a replica, not the fleet. "
        f"{state_after}The ingest rates were measured into a fresh state; a full one (at its "
        "bound, or larger than the page cache) may ingest slower (not measured).",
        "",
        "### Stream memory at the default MAXLEN (extrapolated)",
        "",
        f"- a prediction stream (one per primary model; shadows ride in it) at {m.max_len:,} "
        f"entries: {stream_mb:,.0f} MB; the label stream: {label_mb:,.0f} MB",
        f"- so one primary model: {stream_mb + label_mb:,.0f} MB in all; each further primary "
        f"adds {stream_mb:,.0f} MB. Trimming is approximate (`MAXLEN ~`, whole nodes), and an "
        "entry's size follows its event's JSON: more shadows, labels or embedding dimensions, "
        "longer model names, more bytes",
        "",
        "### Past one monitor: shards by model (extrapolated)",
        "",
        "Sequences/s the fleet carries with N monitors, each with a disjoint "
        "`SHIFTWATCH_MONITOR_MODELS` and its own `SHIFTWATCH_MONITOR_REDIS_GROUP`, traffic "
        "spread evenly over their models: the smaller of the monitors' limit (each ingests "
        "1/N of the predictions with their labels, and every other label as an orphan) and "
        "one Redis's (each label read N times). Last column: on Redis Cluster, the one node "
        "that holds the label stream (its appends, and N shards' reads), at label rate 100%.",
        "",
        markdown_table(
            [
                "monitors",
                "label rate 0%: seq/s (limit)",
                "label rate 100%: seq/s (limit)",
                "label-stream node, 100% (seq/s)",
            ],
            shard_rows,
        ),
    ]
    return "\n".join(lines) + "\n"
