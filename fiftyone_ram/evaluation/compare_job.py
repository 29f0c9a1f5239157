"""The settings of a comparison of taggers (:class:`CompareJob`): every door's defaults and checks, importable
without FiftyOne or torch (the command line builds its options from it at start). The work is
:mod:`fiftyone_ram.evaluation.comparison` (``compare(samples, job=job)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fiftyone_ram.comparators.choice import DEFAULT_MODELS, KINDS, parse_choices
from fiftyone_ram.errors import OptionError
from fiftyone_ram.evaluation.benchmarks import BENCHMARKS, GT_FIELD
from fiftyone_ram.evaluation.metrics import TIES
from fiftyone_ram.jobs import FIELD, PATH, Job, setting
from fiftyone_ram.tagger_spec import BATCH_SIZE

#: How every model's thresholds are chosen (the same way for all: the RAM paper's comparability rule).
PER_CLASS, ONE = "per-class", "one"
THRESHOLD_RULES = (PER_CLASS, ONE)


@dataclass(kw_only=True)
class CompareJob(Job):
    """The settings of a comparison: which models, on which samples, how thresholds are chosen."""

    what = "comparison"

    models: tuple[str, ...] = setting(
        DEFAULT_MODELS, flag="--model", label="Models",
        help=f"the models to compare, each KIND[=SOURCE][,KEY=VALUE...] (kinds: {', '.join(KINDS)}; SOURCE: a hub "
             f"id or folder, a released variant or checkpoint of ours, the field of field=...); default: the "
             f"paper's table")
    gt_field: str = setting(GT_FIELD, kind=FIELD, flag="--gt", label="Ground truth",
                            help="the ground truth: Classifications, Classification, Detections, Polylines (as "
                                 "image-level tags) or a list of strings such as the sample tags")
    name: str = setting("cmp", label="Comparison name",
                        help="the comparison's name: its record (ram_compare_<name>), each model's field "
                             "<name>_<model> and evaluation <name>_<model>_eval")
    classes: str | None = setting(None, kind=PATH, label="Classes file",
                                  help="the compared classes, one per line (a user's list, RAM's 4,585 tags); "
                                       "default: the benchmark's classes, else the ground truth's names")
    threshold_rule: str = setting(PER_CLASS, choices=THRESHOLD_RULES, label="Thresholds",
                                  help="per-class: each class's F1-best threshold (a class without positives to "
                                       "tune on takes the model's one threshold); one: the one threshold for all "
                                       "classes with the best CF1; tuned the same way for every model")
    val_tag: str | None = setting(None, label="Validation sample tag",
                                  help="samples with this tag tune the thresholds and the others are evaluated; "
                                       "default: the evaluated samples tune them (optimistic, as the papers' "
                                       "thresholds tuned by hand)")
    ties: str = setting("sklearn", choices=TIES, label="Tied scores",
                        help="how tied scores rank in AP: sklearn (a group of equal scores is one threshold, as "
                             "scikit-learn) is fair to models whose reduced precision ties scores; pessimistic as "
                             "fiftyone-ram evaluate")
    templates: str | None = setting(None, kind=PATH, label="Prompt templates",
                                    help="the prompt templates of the dual encoders and of RAM's new tags, one per "
                                         "line ({} is the tag); default: upstream's")
    text_encoder: str | None = setting(None, label="CLIP text encoder",
                                       help="RAM / RAM++: the CLIP text model of classes outside their tag list "
                                            "(hub name or folder)")
    batch_size: int = setting(BATCH_SIZE, low=1, label="Batch size", help="images per model call")
    num_workers: int | None = setting(None, low=0, label="Image loading workers",
                                      help="image decoding processes (default: FiftyOne's choice)")
    device: str | None = setting(None, label="Device",
                                 help="the device of every model: cpu, cuda, cuda:1... (default: CUDA when there is one)")
    rerun: bool = setting(False, label="Score again",
                          help="score again the models this comparison already scored, and replace a field or an "
                               "evaluation of its names that it did not write")
    figure: str | None = setting(None, label="Figure file",
                                 help="the PR-curve figure (.png; the interactive .html beside it); default: "
                                      "FIFTYONE_RAM_HOME/comparisons/<dataset>_<name>.png")
    benchmark: str | None = setting(None, choices=tuple(BENCHMARKS), form=False,
                                    help="compare on upstream's benchmark (built once, as fiftyone-ram benchmark) "
                                         "instead of a dataset")
    images_dir: str | None = setting(None, form=False,
                                     help="with --benchmark: the folder of its images (<dir>/test/<id>.jpg or "
                                          "<dir>/<id>.jpg); default: FiftyOne's Open Images V6 zoo dataset")
    annots: str | None = setting(None, kind=PATH, form=False,
                                 help="with --benchmark: its annotations (default: upstream's, downloaded once)")
    taglist: str | None = setting(None, kind=PATH, form=False,
                                  help="with --benchmark: its classes (default: upstream's, downloaded once)")
    max_samples: int | None = setting(None, low=1, form=False, help="with --benchmark: only its first N images")
    dataset_name: str | None = setting(None, form=False, help="with --benchmark: the dataset to build or reuse")

    def check_values(self) -> None:
        super().check_values()
        self.choices()
        if not self.name.isidentifier():
            raise OptionError(f"name (CLI: --name) {self.name!r} must be letters, digits and underscores")
        if self.val_tag is not None and not self.val_tag.strip():
            raise OptionError("val_tag (CLI: --val-tag) is empty")
        given = [n for n in ("images_dir", "annots", "taglist", "max_samples", "dataset_name")
                 if getattr(self, n) is not None]
        if given and self.benchmark is None:
            raise OptionError(f"{self.option_name(given[0])} builds a benchmark: give --benchmark too")

    def choices(self):
        """The models, parsed (:class:`~fiftyone_ram.comparators.choice.ModelChoice`), names checked."""
        return parse_choices(self.models)

    def field_of(self, choice) -> str:
        """Where a model's predictions are: its own field ``<name>_<model>``, or the field a ``field`` reads."""
        return choice.source if choice.kind == "field" else f"{self.name}_{choice.name}"

    def eval_key_of(self, choice) -> str:
        return f"{self.name}_{choice.name}_eval"
