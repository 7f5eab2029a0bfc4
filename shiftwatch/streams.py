"""The Redis Streams event transport's shared contract: stream names, entry format, client.

The service's writer (service/redis_streams.py) and the monitor's consumer
(monitoring/stream_ingest.py) agree on these and nothing else:
- a prediction event goes to `<prefix>:predictions:<model>`, the model that answered it
  (its shadows' outputs ride in the same entry), so a monitor shard reads only its models';
- a label event goes to `<prefix>:labels`, read by every monitor (a label does not say which
  model answered its request, and may arrive at any replica);
- an entry holds one field, `event`, the event's JSON: the same JSON a file segment's line holds.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

EVENT_FIELD = b"event"
# Short timeouts: a writer or consumer facing a dead server notices in about a second and
# backs off, instead of hanging on a half-open connection.
SOCKET_TIMEOUT_SECONDS = 2.0


def prediction_stream(prefix: str, model: str) -> str:
    return f"{prefix}:predictions:{model}"


def label_stream(prefix: str) -> str:
    return f"{prefix}:labels"


def stream_of(prefix: str, event: BaseModel) -> str:
    """The stream an event is appended to."""
    if getattr(event, "type", None) == "label":
        return label_stream(prefix)
    return prediction_stream(prefix, event.model)


def connect(url: str) -> redis.Redis:
    """A client for `url` (redis:// or rediss://); connects lazily, on the first command."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        # No hidden retries: a writer that retried a pipeline whose reply was lost would
        # append it twice; callers count the failure and back off themselves.
        retry=Retry(NoBackoff(), 0),
    )


def safe_url(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def entry_id(value: bytes | str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a sortable pair."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
