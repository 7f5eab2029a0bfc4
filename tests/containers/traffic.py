"""Client traffic for the container tests: requests through a published port, as a user sends
them, and the monitor's counters they should produce."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from shiftwatch.data.synthetic import sample_scenario


@dataclass
class Sent:
    """What a client sent and saw: how many requests, how many the primary got right."""

    requests: int = 0
    correct: int = 0
    labels: int = 0


def predict_and_label(
    url: str, n: int, tag: str, seed: int, token: str, label: bool = True
) -> Sent:
    """n one-sequence /predict requests, each followed by its true label on /feedback (with
    the bearer token every deploy file requires).

    Behind a round-robin balancer the two alternate, so each label reaches another replica
    than the one that served its prediction."""
    traffic = sample_scenario(None, n, seed=seed)
    sent = Sent()
    with httpx.Client(base_url=url, timeout=30) as client:
        rows = zip(traffic["text"], traffic["domain"], traffic["label"], strict=True)
        for i, (text, domain, truth) in enumerate(rows):
            request_id = f"{tag}-{i}"
            body = {"instances": [{"text": text, "domain": domain, "request_id": request_id}]}
            answer = client.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            sent.requests += 1
            sent.correct += answer.json()[0]["label"] == truth
            if label:
                feedback = {"labels": [{"request_id": request_id, "label": truth}]}
                reply = client.post(
                    "/feedback", json=feedback, headers={"Authorization": f"Bearer {token}"}
                )
                assert reply.status_code == 200, reply.text
                sent.labels += 1
    return sent


@dataclass
class Load:
    """Clients posting /predict as fast as answers come. With `probe`, a prober reads /readyz
    every 0.1 s and stops the clients at its first non-200 (a load balancer taking the instance
    out of rotation); without, they run until the block ends. Every request is kept as
    (started, outcome): seconds since the load began, and a status code or the error's name."""

    url: str
    clients: int = 8
    probe: bool = True
    requests: list[tuple[float, int | str]] = field(default_factory=list)
    probes: list[tuple[float, int | str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.routing, self.stopped = threading.Event(), threading.Event()
        self.routing.set()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.threads = [
            threading.Thread(target=self._client, args=(k,)) for k in range(self.clients)
        ]
        if self.probe:
            self.threads.append(threading.Thread(target=self._prober))

    def now(self) -> float:
        return time.monotonic() - self.started

    @property
    def outcomes(self) -> list[int | str]:
        return [outcome for _, outcome in self.requests]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.routing.clear()
        for thread in self.threads:
            thread.join(timeout=120)

    def _client(self, k: int) -> None:
        text = " ".join(f"w{(k * 7 + i) % 50}" for i in range(24))
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while self.routing.is_set():
                body = {"instances": [{"text": text, "request_id": f"load-{k}-{i}"}]}
                started = self.now()
                try:
                    outcome: int | str = client.post("/predict", json=body).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.requests.append((started, outcome))
                i += 1

    def _prober(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stopped.is_set():
                try:
                    outcome: int | str = client.get("/readyz").status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.probes.append((self.now(), outcome))
                if outcome != 200:
                    self.routing.clear()
                time.sleep(0.1)
