"""The settings of a tag evaluation (:class:`EvaluateJob`): every door's defaults and checks, importable without
FiftyOne (the command line builds its options from it at start). The work is :mod:`fiftyone_ram.evaluation.run`
(``evaluate_tags(samples, job=job)``; ``check_evaluation(job, samples)`` refuses before anything is written).
"""

from __future__ import annotations

from dataclasses import dataclass

from fiftyone_ram.errors import OptionError, UserError
from fiftyone_ram.evaluation.metrics import EMPTY_CLASSES, TIES
from fiftyone_ram.jobs import FIELD, PATH, THRESHOLD, Job, setting

#: The key the App's form and the command line offer when none is given.
DEFAULT_EVAL_KEY = "eval_tags"


class EvaluationError(UserError, ValueError):
    """An evaluation that cannot be done as asked (the same field twice, no sample left to evaluate...)."""


@dataclass(kw_only=True)
class EvaluateJob(Job):
    """The settings of a tag evaluation: every door's defaults and checks."""

    what = "evaluation"

    pred_field: str = setting(kind=FIELD, flag="--pred", label="Predicted tags",
                              help="the Classifications field of predicted tags (with confidences)")
    gt_field: str = setting(kind=FIELD, flag="--gt", label="Ground truth",
                            help="the ground truth: Classifications, Classification, Detections, Polylines (as "
                                 "image-level tags) or a list of strings such as the sample tags")
    eval_key: str | None = setting(DEFAULT_EVAL_KEY, label="Evaluation key",
                                   help="record the run under this key (fields <key>_tp, ...); None (Python): "
                                        "record nothing")
    threshold: float | None = setting(None, kind=THRESHOLD, label="Threshold",
                                      help="re-decide tags from the scores at this threshold (default: the stored "
                                           "tags are the predictions)")
    thresholds: str | None = setting(None, kind=PATH, label="Threshold file",
                                     help="per-class thresholds aligned with model_tags (upstream's format)")
    model_tags: str | None = setting(None, kind=PATH, label="Model tag list file",
                                     help="the model's tag list (reads stored logits; reports classes the model "
                                          "lacks)")
    mapping: str | None = setting(None, kind=PATH, label="Name mapping file",
                                  help="ground-truth names to model tags: a JSON object or CSV / TSV rows "
                                       "gt_name,model_name")
    classes: tuple[str, ...] = setting((), help="only these ground-truth classes (default: all that map)")
    top_k: tuple[int, ...] = setting((1, 3), label="Top-k values", help="k values of the top-k variants")
    ties: str = setting("pessimistic", choices=TIES, label="Tied scores",
                        help="how tied scores rank in AP")
    empty_classes: str = setting("exclude", choices=EMPTY_CLASSES, label="Classes without positives",
                                 help="classes without positives: left out of mAP / CP / CR, or counted as 0 "
                                      "(upstream)")
    replace: bool = setting(True, flag=False, form=False,
                            help="replace an earlier tag evaluation under the same key (False: refuse it)")

    def check_values(self) -> None:
        super().check_values()
        if self.threshold is not None and self.thresholds is not None:
            raise OptionError("give one threshold (--threshold) or a threshold file (--thresholds), not both")
        if self.pred_field == self.gt_field:
            raise EvaluationError(f"'{self.pred_field}' is chosen as both the predictions and the ground truth")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.top_k):
            raise OptionError(f"top_k (CLI: --top-k) must be whole numbers of at least 1, not {list(self.top_k)}")
