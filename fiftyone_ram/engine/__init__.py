"""The RAM data engine inside FiftyOne: tag generation, tag cleaning, and the review that commits a cleaning.

``find_outliers`` (numpy and scikit-learn only) is imported directly; the dataset-level functions load on
first use, like the rest of the package, so that importing the package stays cheap for the plugin.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

from fiftyone_ram.engine.outliers import OutlierOptions, OutlierReport, find_outliers, score_outliers

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.engine.cleaning import CleaningSummary, clean_tags  # noqa: F401
    from fiftyone_ram.engine.crops import ClipCrops, EncoderWithTagger, TaggerCrops, make_encoder  # noqa: F401
    from fiftyone_ram.engine.generation import GenerationError, GenerationSummary, generate_tags  # noqa: F401
    from fiftyone_ram.engine.regions import DetectionsRegions, GroundingDinoRegions, make_regions  # noqa: F401
    from fiftyone_ram.engine.review import CleaningError, apply_cleaning, flagged_view, undo_cleaning  # noqa: F401

_EXPORTS = {
    "clean_tags": "cleaning", "CleaningSummary": "cleaning",
    "generate_tags": "generation", "GenerationSummary": "generation", "GenerationError": "generation",
    "apply_cleaning": "review", "undo_cleaning": "review", "flagged_view": "review", "CleaningError": "review",
    "GroundingDinoRegions": "regions", "DetectionsRegions": "regions", "make_regions": "regions",
    "TaggerCrops": "crops", "ClipCrops": "crops", "EncoderWithTagger": "crops", "make_encoder": "crops",
}
__getattr__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_names, "OutlierOptions", "OutlierReport", "find_outliers", "score_outliers"])
