"""Sharing the CPU between torch's threads and DataLoader workers during a tagging run.

torch uses one thread per core for the model; ``apply_model``'s image-decoding workers then compete with
them, and on a small machine the oversubscribed OpenMP threads slow the model down more than the workers
help (2 cores: 2 model threads + 2 workers ran at 0.66x the raw tagger, 1 thread + 2 workers at 0.98x).
FiftyOne does not manage this, so the tagging driver gives the model the cores the workers leave free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def leave_cores_for_workers(num_workers: int, device_type: str = "cpu") -> Iterator[int]:
    """While inside, torch uses ``cores - num_workers`` threads (at least 1) when the model runs on the CPU;
    the previous setting is restored afterwards. Yields the thread count in use."""
    import torch

    before = torch.get_num_threads()
    if device_type != "cpu" or num_workers <= 0:
        yield before
        return
    threads = max(1, min(before, (os.cpu_count() or 1) - num_workers))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
