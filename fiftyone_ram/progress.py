"""The progress callback of long runs over a collection (generation, cleaning, evaluation).

``progress(fraction, label)``: the shape of an operator's ``ctx.set_progress(progress=..., label=...)``, so
the App's operators pass theirs through and Python callers may pass any function (or None).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
