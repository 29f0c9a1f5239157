"""Validation during fine-tuning: the model tags the validation view and ``evaluate_tags`` scores it.

The scores go into a temporary field of the dataset (with their logits, so mAP ranks every image for every
class), named so that it cannot be a field of the user's, and that field is deleted when the run ends;
nothing is stored as an evaluation run. A validation view that only has captions is scored against the
tags parsed from them, kept in a second temporary field. :func:`check_ground_truth` refuses, before a run
writes anything, a view that could not be scored (no labels, none in the vocabulary): without scores no
epoch can be picked as the best.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np


#: Where a refusal sends the user.
_ELSEWHERE = " (label them, or validate on other samples: validation= / --validation-view / --validation-tag)"


def check_ground_truth(view: Any, tag_list: list[str], *, tag_field: str | None, caption_field: str | None,
                       parser: Any, mapping: Any = None):
    """The validation view's ground truth as training reads it (:class:`~fiftyone_ram.training.data.Examples`);
    refuses a view without samples, without labels, or without a label in the vocabulary."""
    from fiftyone_ram.training import data as D

    if not view.count():
        raise D.TrainingDataError("the validation view is empty" + _ELSEWHERE)
    fields = {"tag_field": tag_field} if tag_field is not None else {"caption_field": caption_field}
    examples = D.read_examples(view, tag_list, mapping=mapping if tag_field is not None else None,
                               parser=parser, **fields)
    D.check_examples(examples, **{"tag_field": None, "caption_field": None, **fields},
                     where="the validation view", option=_ELSEWHERE)
    return examples


@dataclass
class Validation:
    """The validation view, its ground truth, and the temporary fields this run created."""

    samples: Any
    gt_field: str
    mapping: Any = None
    batch_size: int = 8
    pred_field: str = field(default_factory=lambda: f"finetune_val_{uuid.uuid4().hex[:10]}")
    created: list[str] = field(default_factory=list)

    @classmethod
    def prepare(cls, samples: Any, *, tag_field: str | None, caption_field: str | None, parser: Any,
                mapping: Any = None, batch_size: int = 8) -> Validation:
        """Ground truth is ``tag_field``, or with captions only, the tags parsed from the captions."""
        if tag_field is not None:
            return cls(samples, tag_field, mapping, batch_size)
        from fiftyone_ram.labels.dataset_captions import parse_caption_field

        validation = cls(samples, f"finetune_val_gt_{uuid.uuid4().hex[:10]}", None, batch_size)
        validation.created.append(validation.gt_field)
        parse_caption_field(samples, caption_field, validation.gt_field, parser=parser)
        return validation

    def evaluate(self, tagger: Any) -> Any:
        """Tag the view with ``tagger`` (as it is now: eval mode, no gradient) and evaluate; returns the
        ``TagEvaluationResults`` (``summary``: mAP, CP, CR, CF1, OP, OR, OF1)."""
        from fiftyone_ram.evaluation.run import evaluate_tags
        from fiftyone_ram.fiftyone.outputs import to_classifications

        tagger.model.clear_query_cache()  # the queries of the last validation belong to older weights
        paths = self.samples.values("filepath")
        labels: list[Any] = [None] * len(paths)
        for batch in tagger.iter_batches(paths, batch_size=self.batch_size):
            made = to_classifications(batch.probabilities, batch.indices, tagger.thresholds[batch.indices],
                                      tagger.tag_list, tagger.excluded, logits=batch.logits)
            for position, label in zip(batch.positions, made):
                labels[position] = label
        if self.pred_field not in self.created:
            self.created.append(self.pred_field)
        self.samples.set_values(self.pred_field, labels)
        return evaluate_tags(self.samples, self.pred_field, self.gt_field, model_tags=tagger, mapping=self.mapping)

    def tuned_thresholds(self, results: Any, tagger: Any, target_precision: float | None) -> np.ndarray:
        """Per-class thresholds tuned on this view (classes it cannot tune keep the tagger's)."""
        tuning = results.tune_thresholds(base_thresholds=np.asarray(tagger.thresholds, np.float32),
                                         tag_list=tagger.tag_list, target_precision=target_precision)
        return tuning.thresholds

    def cleanup(self) -> None:
        dataset = self.samples._dataset
        for name in self.created:
            if dataset.get_field(name) is not None:
                dataset.delete_sample_field(name)
        self.created.clear()


def summary_of(results: Any) -> dict[str, float | None]:
    """The numbers of an evaluation that the log and the progress show."""
    keys = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
    out = {}
    for key in keys:
        value = results.summary.get(key)
        out[key] = None if value is None or not np.isfinite(value) else float(value)
    return out
