"""One intra-op thread for the empirical tests.

Their models are tiny: a second thread brings no speed, and when another process shares this project's
2 CPU cores OpenMP barriers stall for milliseconds per step (measured: 0.3 ms per step with one thread,
bursts of 7 ms with two).  Subprocesses started by the tests get ``OMP_NUM_THREADS=1`` for the same reason
and so compute bit for bit like the in-process runs they are compared with.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
