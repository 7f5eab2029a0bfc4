"""Training-tier fixtures (torch is imported here, not in the top-level conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run tiny models on one intra-op thread.

    Their ops are far too small to gain from parallelism, and on a busy 2-core box
    two spinning threads make a 20-step loop an order of magnitude slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
