"""Tag-quality evaluation: multi-label metrics recorded as FiftyOne evaluation runs.

``evaluate_tags`` and ``compare`` are imported lazily so that ``import fiftyone_ram.evaluation`` (e.g. by the CLI or the
plugin) does not start FiftyOne; ``metrics``, ``vocabulary`` and ``thresholds`` need only numpy.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.evaluation.run import TagEvaluationResults, evaluate_tags  # noqa: F401
    from fiftyone_ram.evaluation.thresholds import tune_thresholds  # noqa: F401
    from fiftyone_ram.evaluation.comparison import Comparison, compare  # noqa: F401
    from fiftyone_ram.evaluation.compare_job import CompareJob  # noqa: F401

_EXPORTS = {
    "evaluate_tags": "run", "TagEvaluationResults": "run", "EvalKeyError": "keys", "tune_thresholds": "thresholds",
    "compare": "comparison", "Comparison": "comparison", "CompareJob": "compare_job", "evaluate_arrays": "metrics",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
