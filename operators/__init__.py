"""FiftyOne plugin entry point: registers the operators of each module below.

FiftyOne executes this file on every operator request, so it only imports the thin operator modules; they
import ``fiftyone_ram`` (the installed package) inside their methods.
"""

import importlib

# One module per group of operators; each defines ``register(p)``.
_MODULES: tuple[str, ...] = ("tagging", "evaluation", "compare", "captions", "engine", "training", "pipeline",
                             "panels")


def register(p) -> None:
    for name in _MODULES:
        importlib.import_module(f".{name}", __name__).register(p)
