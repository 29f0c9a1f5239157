"""The RAM data engine inside FiftyOne: tag generation, tag cleaning and the review of what cleaning found."""
from fiftyone_ram.engine.outliers import OutlierOptions, OutlierReport, find_outliers, score_outliers

__all__ = ["OutlierOptions", "OutlierReport", "find_outliers", "score_outliers"]
