"""Random weights with realistic outputs, for the benchmarks that store labels.

A checkpoint of random weights in the released layout scores every image alike and, at upstream's per-class
thresholds, emits ~1,900 tags per image; the released RAM emits 10-40. What a run costs beside the model
(building label objects, storing them) grows with the number of tags, so a benchmark of the write path must
emit as many as a real model does. :func:`calibrated_thresholds` finds the one threshold at which the model
emits ``tags_per_image`` tags per image on average over some calibration images, and writes it as a per-class
threshold file (the format ``load_tagger(thresholds=...)`` reads). The benchmarks print that they use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Tags per image of the released RAM on everyday photos (the paper's examples; users' reports): 10-40.
TAGS_PER_IMAGE = 30


def calibrated_thresholds(tagger: Any, images: list[str], target: Path, tags_per_image: int = TAGS_PER_IMAGE
                          ) -> Path:
    """Write to ``target`` a threshold file (one value per tag of ``tagger``) at which ``tagger`` emits about
    ``tags_per_image`` tags per image of ``images``; returns ``target``."""
    from fiftyone_ram.tag_files import write_thresholds

    scores = np.concatenate([batch.probabilities for batch in tagger.iter_batches(images)])
    per_image = np.sort(scores, axis=1)[:, ::-1]
    rank = min(max(tags_per_image, 1), scores.shape[1]) - 1
    # Between the k-th and (k+1)-th best score of the median image: about k tags pass on each image.
    upper = float(np.median(per_image[:, rank]))
    lower = float(np.median(per_image[:, min(rank + 1, scores.shape[1] - 1)]))
    threshold = (upper + lower) / 2
    write_thresholds(target, np.full(scores.shape[1], threshold, np.float32))
    return target


def tags_emitted(tagger: Any, images: list[str]) -> float:
    """Mean number of tags per image ``tagger`` emits on ``images`` at its thresholds."""
    predictions = tagger.predict(images)
    return float(np.mean([len(row) for row in predictions])) if predictions else 0.0
