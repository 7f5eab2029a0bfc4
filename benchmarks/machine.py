"""What every benchmark records about where and when it ran: the machine, the versions, and
how busy the machine was meanwhile (rendered by benchmarks/render/)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# /proc/cpuinfo flags that decide which GEMM kernels onnxruntime and torch can use.
GEMM_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")


def machine_summary() -> str:
    """One line: CPU model, cores (all and usable by this process), GEMM-relevant flags."""
    model, flags = "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    present = [f for f in GEMM_FLAGS if f in flags] or ["none of " + "/".join(GEMM_FLAGS)]
    return (
        f"{model}; {os.cpu_count()} cores ({usable} usable by this process); "
        f"GEMM flags: {', '.join(present)}"
    )


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time used so far by the whole machine and by this process, and the wall clock."""

    machine_busy_s: float | None  # all processes since boot (/proc/stat); None off Linux
    own_s: float  # this process, all its threads
    wall_s: float

    @classmethod
    def now(cls) -> CpuSnapshot:
        busy = None
        stat = Path("/proc/stat")
        if stat.exists():
            # cpu  user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait
            ticks = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
            busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        return cls(busy, time.process_time(), time.perf_counter())


def other_load_cores(start: CpuSnapshot, end: CpuSnapshot) -> float | None:
    """Cores used on average by everything but this process between two snapshots.

    A benchmark's numbers are only comparable when this is near 0.
    """
    if start.machine_busy_s is None or end.machine_busy_s is None:
        return None
    others = (end.machine_busy_s - start.machine_busy_s) - (end.own_s - start.own_s)
    return max(others, 0.0) / (end.wall_s - start.wall_s)


@dataclass(frozen=True)
class Environment:
    """Where and when a benchmark ran, as its section states it."""

    machine: str  # machine_summary()
    date: str  # UTC, ISO 8601 to the second: when it was captured (the measuring done)
    python: str
    omp_wait_policy: str  # OMP_WAIT_POLICY, or "unset"
    versions: dict[str, str] = field(default_factory=dict)  # package -> version, those named

    @classmethod
    def capture(cls, **versions: str) -> Environment:
        """This machine now; `versions` are the packages the section names (e.g. torch=...)."""
        return cls(
            machine=machine_summary(),
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            python=platform.python_version(),
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset"),
            versions=versions,
        )
