"""Real `bentoml serve` processes (and the bare onnxruntime server) on loopback for benchmarks,
and the HTTP load that drives them.

A server runs in its own session with its own BENTOML_HOME (the model store linked in):
BentoML wipes `$BENTOML_HOME/prometheus_multiproc_dir` when a server starts, and every
server on one home would read the others' metric files, so servers sharing a home
would erase and mix each other's /metrics. Stopping sends SIGTERM to the server, then
SIGKILL by pid to any of its processes still alive (BentoML's workers run in their own
process groups), and checks that the port is free again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.keepalive import KeepAliveConnection, ProtocolError
from benchmarks.timing import Timing
from harness import free_port, wait_until
from orchestration.replay.stack import LOOPBACK_FEEDBACK

HOST = "127.0.0.1"  # loopback only: the benchmark never listens on or calls another address
READY_TIMEOUT_S = 120.0  # several servers starting at once on 2 busy cores
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0  # the service's own traffic timeout
JSON = {"content-type": "application/json"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT")  # a new entry of BentoML's log
BATCH_SIZE = "shiftwatch_inference_batch_size"  # histogram of instances per predict call
CHAINING = ("Traceback", "During handling", "The above exception")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds used, start time in ticks) of every process (Linux)."""
    table: dict[int, tuple[int, float, int]] = {}
    if not Path("/proc").is_dir():
        return table
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the ")" that closes the command name: state ppid ... utime stime ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        table[int(entry.name)] = (int(fields[1]), cpu, int(fields[19]))
    return table


def process_tree(pid: int) -> dict[int, tuple[float, int]]:
    """pid -> (CPU seconds, start time) of `pid` and its live descendants."""
    table = _proc_table()
    tree, frontier = {}, [pid]
    while frontier:
        current = frontier.pop()
        if current in table and current not in tree:
            tree[current] = (table[current][1], table[current][2])
            frontier += [child for child, row in table.items() if row[0] == current]
    return tree


def process_cpu_seconds(pid: int) -> float:
    """CPU used so far by `pid` and its live descendants, all their threads (e.g. a
    redis-server started by a benchmark)."""
    return sum(cpu for cpu, _ in process_tree(pid).values())


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them.

    Around starting a server and recording it (a signal inside `Popen` would leave a
    running server nobody knows of) and around stopping them all.
    """
    caught: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def port_is_free(port: int) -> bool:
    """Nothing listens on HOST:port (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass
class Server:
    """One server process started by this benchmark: `bentoml serve
    service.service:Shiftwatch` (`start`), or the bare onnxruntime server (`start_bare`)."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    metrics: bool = True  # it answers /metrics with the service's series
    family: dict[int, tuple[float, int]] = field(default_factory=dict)  # last seen processes
    stray_killed: int = 0  # processes still alive after the server exited, killed by pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, name: str, env: dict[str, str], workdir: Path, models: Path) -> Server:
        """Start the service on a free loopback port (not yet ready; see `wait_ready`).

        Args:
            env: variables on top of this process's environment.
            workdir: its BENTOML_HOME (`workdir/bentoml_home`) and log (`workdir/serve.log`).
            models: the model store's folder, linked into that home.
        """
        home = workdir / "bentoml_home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(models.resolve(), target_is_directory=True)
        command = ["bentoml", "serve", "service.service:Shiftwatch"]
        env = {**LOOPBACK_FEEDBACK, **env, "BENTOML_HOME": str(home)}
        return cls._spawn(name, command, env, workdir)

    @classmethod
    def start_bare(
        cls, name: str, env: dict[str, str], workdir: Path, processes: int = 1
    ) -> Server:
        """Start benchmarks/bare_server.py on uvicorn (env: its bundle and threads), with
        `processes` uvicorn workers."""
        workdir.mkdir(parents=True, exist_ok=True)
        command = ["uvicorn", "--factory", "benchmarks.bare_server:make_app"]
        command += ["--workers", str(processes)] if processes > 1 else []
        return cls._spawn(name, command, env, workdir, metrics=False)

    @classmethod
    def _spawn(
        cls, name: str, module: list[str], env: dict[str, str], workdir: Path, metrics: bool = True
    ) -> Server:
        """`python -m <module...> --host HOST --port <free port>`, logging to workdir/serve.log."""
        log_path, port = workdir / "serve.log", free_port()
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *module, "--host", HOST, "--port", str(port)],
                cwd=Path(__file__).resolve().parents[1],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops it in order
            )
        return cls(name, process, port, log_path, metrics)

    def wait_ready(self, deadline: float) -> None:
        """Poll /readyz until 200; raise with the log's tail if the server exits or is late."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"server '{self.name}' exited:\n{self.log_tail()}")
            response = httpx.get(f"{self.url}/readyz", timeout=1, trust_env=False)
            return response.status_code == 200

        try:
            wait_until(
                ready,
                deadline - time.monotonic(),
                f"server '{self.name}' ready",
                every=0.25,
                tolerate=(httpx.HTTPError,),
            )
        except AssertionError as late:
            raise RuntimeError(f"{late}:\n{self.log_tail()}") from None
        self.family = process_tree(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU used so far by the server's live processes."""
        self.family = process_tree(self.process.pid) or self.family
        return sum(cpu for cpu, _ in self.family.values())

    def stop(self) -> bool:
        """Stop the server and every process it started; True when its port is free again."""
        if self.process.poll() is None:
            self.family = process_tree(self.process.pid) or self.family
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 5
        while True:
            alive = process_tree_alive(self.family)
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between the check and the kill
        self.stray_killed = len(alive)
        deadline = time.monotonic() + 5
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        return port_is_free(self.port)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_errors(self) -> Counter[str]:
        """The log's ERROR entries, by the exception line that ends each (else its message)."""
        errors: Counter[str] = Counter()
        current = None  # summary of the ERROR entry being read
        for line in [*self.log_path.read_text(errors="replace").splitlines(), "0000-00-00T"]:
            if TIMESTAMP.match(line):
                if current is not None:
                    errors[current] += 1
                message = line.split("] ", 2)[-1].split(" (trace=")[0]
                current = message if "[ERROR]" in line else None
            elif current is not None and line[:1].strip() and not line.startswith(CHAINING):
                current = line  # the last exception line wins: the one the client saw
        return errors

    def metric(self, name: str) -> float:
        """Sum over labels of one sample name (e.g. `..._count`) on the server's /metrics;
        0 for a server without the service's metrics (the bare server)."""
        if not self.metrics:
            return 0.0
        text = httpx.get(f"{self.url}/metrics", timeout=10, trust_env=False).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )


def process_tree_alive(family: dict[int, tuple[float, int]]) -> list[int]:
    """The pids of `family` still running as the same process (same start time)."""
    table = _proc_table()
    return [pid for pid, (_, started) in family.items() if table.get(pid, (0, 0, -1))[2] == started]


@dataclass(frozen=True)
class Request:
    """What every caller sends, again and again."""

    method: str
    path: str
    body: bytes = b""


@dataclass
class Slice:
    """What one stretch of load on one server measured."""

    latencies_ms: list[float]  # of answers with status 200
    outcomes: Counter[str]  # HTTP status or exception name -> count
    wall_s: float  # from the first timed request sent to the last answer
    client_cpu_s: float  # CPU this process used meanwhile (the load generator)


async def _send(connection: KeepAliveConnection, request: Request) -> str:
    try:
        status, _ = await connection.request(request.method, request.path, request.body)
        return str(status)
    except (OSError, asyncio.IncompleteReadError, ProtocolError, TimeoutError) as exc:
        return type(exc).__name__


async def _drive(port: int, request: Request, clients: int, requests: int, seconds: float) -> Slice:
    # One client (one keep-alive connection) per concurrent worker, like independent callers.
    pool = [KeepAliveConnection(HOST, port, REQUEST_TIMEOUT_S) for _ in range(clients)]
    try:
        await asyncio.gather(*(_send(c, request) for c in pool))  # untimed: opens the connections
        latencies: list[float] = []
        outcomes: Counter[str] = Counter()
        remaining = requests
        cpu, started = time.process_time(), time.perf_counter()
        deadline = started + seconds

        async def worker(client: KeepAliveConnection) -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                sent = time.perf_counter()
                outcome = await _send(client, request)
                outcomes[outcome] += 1
                if outcome == "200":
                    latencies.append((time.perf_counter() - sent) * 1e3)

        await asyncio.gather(*(worker(c) for c in pool))
        wall = time.perf_counter() - started
        return Slice(latencies, outcomes, wall, time.process_time() - cpu)
    finally:
        await asyncio.gather(*(c.close() for c in pool))


def drive(port: int, request: Request, clients: int, requests: int, seconds: float) -> Slice:
    """Send `request` to HOST:port from `clients` concurrent callers, each waiting for its
    answer (benchmarks/keepalive.py: httpx's own CPU time would be in every latency).

    Stops after `requests` timed requests or once `seconds` have passed (requests in
    flight then are awaited), whichever comes first.
    """
    return asyncio.run(_drive(port, request, clients, requests, seconds))


@dataclass
class Alternation:
    """One client's requests to several servers in turn, in short blocks (see `alternate`)."""

    blocks_ms: list[list[list[float]]]  # per server, per cycle: latencies of 200 answers
    outcomes: list[Counter[str]]  # per server: HTTP status or exception name -> count

    def latencies_ms(self, server: int) -> list[float]:
        return [ms for block in self.blocks_ms[server] for ms in block]


async def _alternate(ports: list[int], request: Request, block: int, cycles: int) -> Alternation:
    pool = [KeepAliveConnection(HOST, port, REQUEST_TIMEOUT_S) for port in ports]
    result = Alternation([[] for _ in ports], [Counter() for _ in ports])
    try:
        await asyncio.gather(*(_send(c, request) for c in pool))  # untimed: opens the connections
        for cycle in range(cycles):
            for k in [(cycle + i) % len(ports) for i in range(len(ports))]:
                await _send(pool[k], request)  # untimed: the server was idle meanwhile
                times = []
                for _ in range(block):
                    sent = time.perf_counter()
                    outcome = await _send(pool[k], request)
                    result.outcomes[k][outcome] += 1
                    if outcome == "200":
                        times.append((time.perf_counter() - sent) * 1e3)
                result.blocks_ms[k].append(times)
        return result
    finally:
        await asyncio.gather(*(c.close() for c in pool))


def alternate(ports: list[int], request: Request, block: int, cycles: int) -> Alternation:
    """One client: `block` timed requests to each server in turn, back to back, each block
    after one untimed request; `cycles` times, the order rotating. Drift in the machine's
    speed then lands on every server alike within a fraction of a second, which longer
    rounds do not achieve: for comparing servers whose p50s differ by a few percent."""
    return asyncio.run(_alternate(ports, request, block, cycles))


@dataclass
class Cell:
    """One server at one concurrency, pooled over the rounds it was measured in."""

    latencies_ms: list[float] = field(default_factory=list)  # answers with status 200
    outcomes: Counter[str] = field(default_factory=Counter)  # HTTP status or exception name
    round_p50_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    instances: float = 0.0  # in the server's predict calls (its batch-size histogram)
    predict_calls: float = 0.0

    def measure(
        self, server: Server, request: Request, clients: int, requests: int, seconds: float
    ) -> None:
        """One round: `drive` the server, with its CPU time and predict calls meanwhile."""
        batches = server.metric(f"{BATCH_SIZE}_sum"), server.metric(f"{BATCH_SIZE}_count")
        cpu = server.cpu_seconds()
        load = drive(server.port, request, clients, requests, seconds)
        self.server_cpu_s += server.cpu_seconds() - cpu
        self.instances += server.metric(f"{BATCH_SIZE}_sum") - batches[0]
        self.predict_calls += server.metric(f"{BATCH_SIZE}_count") - batches[1]
        self.latencies_ms += load.latencies_ms
        self.outcomes += load.outcomes
        if load.latencies_ms:
            self.round_p50_ms.append(Timing(tuple(load.latencies_ms)).median_ms)
        self.wall_s += load.wall_s
        self.client_cpu_s += load.client_cpu_s

    @property
    def timing(self) -> Timing | None:
        return Timing(tuple(self.latencies_ms)) if self.latencies_ms else None

    @property
    def throughput(self) -> float:
        """Answers with status 200 per second."""
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0

    @property
    def failures(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "200")
