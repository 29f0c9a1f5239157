"""Tag-quality evaluation: multi-label metrics recorded as FiftyOne evaluation runs.

``evaluate_tags`` and ``compare`` are imported lazily so that ``import fiftyone_ram.evaluation`` (e.g. by the CLI or the
plugin) does not start FiftyOne; ``metrics``, ``vocabulary`` and ``thresholds`` need only numpy.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.evaluation.run import TagEvaluationResults, evaluate_tags  # noqa: F401
    from fiftyone_ram.evaluation.thresholds import tune_thresholds  # noqa: F401
    from fiftyone_ram.evaluation.comparison import Comparison, compare  # noqa: F401
    from fiftyone_ram.evaluation.compare_job import CompareJob  # noqa: F401

__all__ = ["evaluate_tags", "TagEvaluationResults", "EvalKeyError", "tune_thresholds", "evaluate_arrays", "compare",
           "Comparison", "CompareJob"]


def __getattr__(name: str):
    if name in ("evaluate_tags", "TagEvaluationResults"):
        from fiftyone_ram.evaluation import run

        return getattr(run, name)
    if name == "EvalKeyError":  # a refused key (fiftyone_ram.evaluation.keys imports no FiftyOne)
        from fiftyone_ram.evaluation.keys import EvalKeyError

        return EvalKeyError
    if name == "tune_thresholds":
        from fiftyone_ram.evaluation.thresholds import tune_thresholds

        return tune_thresholds
    if name in ("compare", "Comparison"):  # the RAM paper's table on one's own data (FiftyOne, torch)
        from fiftyone_ram.evaluation import comparison

        return getattr(comparison, name)
    if name == "CompareJob":
        from fiftyone_ram.evaluation.compare_job import CompareJob

        return CompareJob
    if name == "evaluate_arrays":
        from fiftyone_ram.evaluation.metrics import evaluate_arrays

        return evaluate_arrays
    raise AttributeError(f"module 'fiftyone_ram.evaluation' has no attribute {name!r}")
