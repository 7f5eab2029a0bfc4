"""onnxruntime's profiler, read back by operator type, on a real (tiny) exported bundle."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ort_profile import MATMUL_OPS, profile_ops
from tests.conftest import TINY_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_kernel_time_by_operator_covers_the_graph(tiny_bundle) -> None:
    ids = np.random.default_rng(0).integers(2, tiny_bundle.tokenizer.vocab_size, size=(2, 16))
    mask = np.ones_like(ids)
    profile = profile_ops(tiny_bundle.model_path, 1, ids, mask, runs=5)
    # Every run executes the same nodes: MatMuls of the projections and MLP, and one fused
    # attention node per layer (no Softmax of its own left in the graph).
    assert profile.nodes["MultiHeadAttention"] == TINY_MODEL["n_layers"]
    assert "Softmax" not in profile.nodes
    assert profile.nodes.keys() == profile.us_per_run.keys()
    assert all(t >= 0 for t in profile.us_per_run.values()) and profile.total_us > 0
    assert 0 < profile.share(MATMUL_OPS) < 1
    assert profile.share(set(profile.us_per_run)) == pytest.approx(1.0)
