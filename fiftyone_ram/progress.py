"""How long runs report progress: ``progress(fraction, label)``, the shape of an operator's
``ctx.set_progress(progress=..., label=...)``, so the App's operators pass theirs through and Python callers may
pass any function. :class:`ConsoleProgress` is the command line's (one rewritten stderr line), and
:func:`resolve_progress` turns what callers give (True, False, None, a function) into one of these.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Progress = Callable[[float, str], None]


class ConsoleProgress:
    """Rewrites one stderr line, at most every ``interval`` seconds (and always at 100 %). Hand-written rather than
    tqdm (not a dependency) or FiftyOne's bar (which draws according to the process's FiftyOne config)."""

    def __init__(self, interval: float = 0.5, stream=None) -> None:
        self.interval = interval
        self.stream = stream or sys.stderr
        self._last = 0.0

    def __call__(self, fraction: float, label: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        self.stream.write(f"\r{fraction * 100:5.1f}% {label}\x1b[K")
        self.stream.flush()

    def newline(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def resolve_progress(progress: bool | Progress | None) -> Progress | None:
    """True: a :class:`ConsoleProgress`; False or None: nothing; a function: itself."""
    if progress is True:
        return ConsoleProgress()
    if not progress:
        return None
    return progress
