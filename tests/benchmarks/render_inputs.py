"""Fixed benchmark results for the render tests: every number made up, deterministic.

tests/benchmarks/golden/ holds what the code before the measuring/rendering split rendered
from these same numbers."""

from collections import Counter
from datetime import UTC, datetime

import numpy as np

MACHINE = "Test CPU 9000; 2 cores (2 usable by this process); GEMM flags: avx2, fma"
NOW = datetime(2026, 12, 2, 5, 54, 13, tzinfo=UTC)
PY = "3.11.7"
VERSIONS = {
    "torch": "2.13.0+cpu",
    "onnxruntime": "1.32.0",
    "bentoml": "1.4.0",
    "httpx": "0.28.1",
    "uvicorn": "0.34.0",
}


def samples(base, n, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(float(base * (1 + spread * x)) for x in rng.random(n))


ENGINES = ("torch eager", "ORT fp32", "ORT int8")


def inference_timings(lengths=(32, 128, 512), batches=(1, 8, 32)):
    out = {}
    k = 0
    for seq in lengths:
        for batch in batches:
            for i, name in enumerate(ENGINES):
                k += 1
                out[batch, seq, name] = samples(0.01 * batch * seq / (1 + i * 0.4), 40, seed=k)
    return out


OPS = {  # op -> (fp32 nodes, fp32 us, int8 nodes, int8 us)
    "MultiHeadAttention": (2, 177.6, 2, 225.6),
    "Add": (13, 130.1, 6, 51.0),
    "DynamicQuantizeMatMul": (0, 0.0, 9, 151.0),
    "MatMul": (8, 139.4, 0, 0.0),
    "LayerNormalization": (4, 49.8, 4, 48.8),
    "Mul": (5, 40.8, 5, 48.0),
    "SkipLayerNormalization": (1, 30.7, 1, 31.5),
    "Erf": (2, 23.0, 2, 29.4),
    "Div": (3, 23.4, 3, 27.2),
    "Unsqueeze": (4, 22.1, 4, 25.5),
    "Split": (2, 26.6, 2, 20.8),
    "ReduceSum": (2, 19.0, 2, 20.1),
    "Reshape": (3, 11.0, 3, 10.0),
    "Gather": (2, 9.0, 2, 8.5),
    "Softmax2": (1, 3.0, 1, 2.0),
}
ACCURACY = {
    "test": {
        "fp32_accuracy": 0.985,
        "int8_accuracy": 0.985,
        "delta_points": 0.0,
        "argmax_agreement": 1.0,
    },
    "new_domain": {
        "fp32_accuracy": 0.673,
        "int8_accuracy": 0.673,
        "delta_points": 0.0,
        "argmax_agreement": 0.997,
    },
    "label_shift": {
        "fp32_accuracy": 0.976,
        "int8_accuracy": 0.974,
        "delta_points": -0.2,
        "argmax_agreement": 0.998,
    },
}

# service
CLIENTS = (1, 8, 32)
SERVICE_CONFIG_NAMES = (
    "default",
    "redis transport",
    "batching off",
    "event log off",
    "no shadows",
    "bare server",
)


def cell_values(name_index, clients):
    seed = 100 * name_index + clients
    lat = list(samples(2.0 + 0.3 * name_index + 0.2 * clients, 30 + clients, seed=seed))
    outcomes = Counter({"200": len(lat)})
    if name_index == 2 and clients == 32:
        outcomes["503"] = 4
        outcomes["ReadTimeout"] = 1
    rounds = [round(lat[0], 4), round(lat[1], 4), round(lat[2], 4)]
    return dict(
        latencies_ms=lat,
        outcomes=outcomes,
        round_p50_ms=rounds,
        wall_s=1.5 + clients * 0.1,
        client_cpu_s=0.3,
        server_cpu_s=0.9 + name_index * 0.05,
        instances=float(len(lat)),
        predict_calls=float(len(lat)) / (4 if clients == 32 and name_index != 2 else 1)
        if name_index != 5
        else 0.0,
    )


def alternation_values(servers=5, cycles=12, block=6):
    blocks = [
        [list(samples(2.0 + 0.05 * s, block, seed=1000 + 50 * s + c)) for c in range(cycles)]
        for s in range(servers)
    ]
    outcomes = [Counter({"200": cycles * block}) for _ in range(servers)]
    outcomes[1]["503"] = 2
    return blocks, outcomes


def service_facts():
    facts = {}
    for i, name in enumerate(SERVICE_CONFIG_NAMES):
        errors = Counter()
        if i == 1:
            errors = Counter(
                {
                    "redis.exceptions.ConnectionError: Error 111 | refused": 3,
                    "ValueError: x": 1,
                    "KeyError: y": 1,
                }
            )
        facts[name] = {
            "served": 1234.0 + i,
            "write_errors": float(i == 1),
            "shadows_skipped": 0.0,
            "events": 2468 + i,
            "log_errors": errors,
            "port_freed": i != 3,
            "stray_killed": 2 if i == 4 else 0,
        }
    return facts


REDIS_FACTS = {
    "version": "7.2.4",
    "streams": {"bench:predictions:baseline": 1500, "bench:labels": 0},
    "cpu_s": 3.21,
    "measured_s": 140.0,
}
