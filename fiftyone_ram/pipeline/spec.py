"""What a pipeline run is asked to do (:class:`PipelineJob`), the names of everything it writes (:class:`Names`),
and the spec file it is read from (:func:`load_spec`: YAML or JSON, the same keys as the job's settings).

A pipeline runs the data engine of the RAM paper on a user's own images, round after round: tags parsed from
captions (and any tags the dataset has), a first model trained on them, tags generated and cleaned with that
model, the review of the removals, a model retrained on the processed tags and fine-tuned on a small verified
view, and its evaluation on a validation view. Each stage is an existing job with its own settings: the spec's
``train`` / ``retrain`` / ``finetune``, ``generate``, ``clean`` and ``evaluate`` mappings are those jobs'
settings (:class:`TrainingStage` and the fine-tuning recipe; ``GenerateJob``, ``CleanJob``, ``EvaluateJob``),
checked by those jobs when the spec is read. The names of fields, views, evaluation keys and model folders are
functions of the prefix, the output folder and the round, so a resumed run finds what an earlier one wrote.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiftyone_ram.engine.cleaning import FLAG_REASONS, CleanJob
from fiftyone_ram.engine.generation import GenerateJob
from fiftyone_ram.engine.review import default_fields
from fiftyone_ram.errors import UserError
from fiftyone_ram.evaluation.job import EvaluateJob
from fiftyone_ram.jobs import FIELD, PATH, Job, setting
from fiftyone_ram.training.job import FinetuneJob

#: The stages of a round, in order: parse (round 0 only) and train (round 1 only) start the loop.
STAGES = ("parse", "train", "generate", "clean", "review", "retrain", "finetune", "evaluate")
#: The stages that write a model folder.
TRAINING_STAGES = ("train", "retrain", "finetune")
#: How the review of cleaning's flags is done.
REVIEW_MODES = ("auto", "wait")
#: What the retraining of a round starts from.
RETRAIN_FROM = ("start", "previous")
#: Settings of the stage jobs that the pipeline sets itself (names, resume), by stage.
RESERVED = {
    "generate": ("out_field", "tag_fields", "caption_fields", "overwrite", "parser_tags"),
    "clean": ("tag_field", "resume", "overwrite", "cleaned_field", "review_field", "view_name"),
    "evaluate": ("pred_field", "gt_field", "eval_key", "replace"),
    "training": ("output_dir", "tag_field", "caption_field", "validation_field", "parser_tags", "resume",
                 "overwrite", "changes"),
}


class PipelineError(UserError, ValueError):
    """A pipeline that cannot run as asked (a bad spec, a name that is taken, nothing to resume...)."""


@dataclass(kw_only=True)
class TrainingStage(Job):
    """One training stage's settings (``train``, ``retrain`` or ``finetune`` in the spec); the spec's other keys
    of that stage are the fine-tuning recipe's (``epochs``, ``batch_size``, ``lr``, ``teacher``...)."""

    what = "training stage"

    weak_start: bool = setting(False, help="the weak-start recipe (a random or far-off start) instead of upstream's")
    captions: bool = setting(False, help="also learn from the caption field (its caption loss, and its parsed tags "
                                         "as targets); the first training of the paradigm does")
    processes: int = setting(1, low=1, help="training processes on this machine (more than one: torchrun, DDP)")
    #: The recipe's values given for this stage (FinetuneSettings' names).
    changes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, Any] | None, stage: str) -> TrainingStage:
        """The stage from the spec's mapping: its own keys, and the recipe's (checked by the recipe)."""
        values = dict(values or {})
        own = {f.name for f in cls.settings()}
        taken = sorted(set(values) & set(RESERVED["training"]))
        if taken:
            raise PipelineError(f"{stage}: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by the "
                                f"pipeline")
        stage_values = {k: values.pop(k) for k in list(values) if k in own}
        try:
            made = cls.from_values(stage_values, changes=values)
            FinetuneJob(output_dir=".", tag_field="tags", weak_start=made.weak_start, changes=values)  # the recipe
        except UserError as exc:
            raise PipelineError(f"{stage}: {exc}") from None
        return made


@dataclass(kw_only=True)
class PipelineJob(Job):
    """A pipeline: the data, the starting model, the stages and their settings, the rounds."""

    what = "pipeline"

    dataset: str = setting(flag=False, form=False, help="the FiftyOne dataset")
    output_dir: str = setting(flag="--output", label="Output folder",
                              help="where the model folders go (<output>/round<N>/<stage>) and the report figure")
    prefix: str = setting("pipeline", label="Field prefix",
                          help="the names of what the pipeline writes: <prefix> (the current tags), "
                               "<prefix>_r<N> (round N's tags), <prefix>_r<N>_val (its model's validation "
                               "predictions)...")
    model: Any = setting(None, flag=False, form=False,
                         help="the starting model: a released variant, a model folder, or a mapping of the tagger "
                              "spec's fields (model, checkpoint, family, tag_list, thresholds, vocabulary...)")
    caption_field: str | None = setting(None, kind=FIELD, label="Captions",
                                        help="the captions to parse into tags (a string or list-of-strings field)")
    tag_field: str | None = setting(None, kind=FIELD, label="Existing tags",
                                    help="tags the dataset already has, kept as round 0's 'original' tags")
    reference_field: str | None = setting(None, kind=FIELD, label="Reference tags",
                                          help="trusted tags to measure each round's tags against (label precision, "
                                               "recall, F1)")
    samples: str | None = setting(None, label="Samples",
                                  help="the samples the engine works on: a saved view or a sample tag (default: "
                                       "all; the validation samples are always left out)")
    validation: str | None = setting(None, label="Validation view",
                                     help="the samples that score every model: a saved view or a sample tag")
    validation_field: str | None = setting(None, kind=FIELD, label="Validation ground truth",
                                           help="the validation samples' trusted tags (default: the reference "
                                                "field, else the existing tags)")
    finetune_view: str | None = setting(None, label="Verified view",
                                        help="a small verified view for the last step of each round: a saved view "
                                             "or a sample tag (default: no fine-tuning)")
    finetune_field: str | None = setting(None, kind=FIELD, label="Verified tags",
                                         help="the verified view's tags (default: the round's tags)")
    rounds: int = setting(2, low=1, high=100, label="Rounds", help="rounds of generate, clean, review and retrain")
    stages: tuple[str, ...] = setting(STAGES, choices=STAGES, label="Stages",
                                      help="the stages to run (the others are skipped)")
    retrain_from: str = setting("start", choices=RETRAIN_FROM, label="Retrain from",
                                help="start: the starting model, as the paradigm retrains; previous: the round's "
                                     "own model (faster)")
    review: str = setting("auto", choices=REVIEW_MODES, label="Review",
                          help="auto: accept the removals that accept_reasons and min_outlier_score allow; wait: "
                               "stop after cleaning until the flags are reviewed in the Tag review panel, then run "
                               "again with resume")
    accept_reasons: tuple[str, ...] = setting(FLAG_REASONS, choices=FLAG_REASONS, label="Removals accepted",
                                              help="with the automatic review: the flag reasons whose removals are "
                                                   "accepted")
    min_outlier_score: float | None = setting(None, low=0.0, label="Least outlier score",
                                              help="with the automatic review: accept an outlier flag only at or above "
                                                   "this score (its distance over its cluster's typical distance)")
    parser_tags: str | None = setting(None, kind=PATH, label="Tag list for parsing",
                                      help="tag list or saved label system file for parsing captions (default: "
                                           "RAM's 4,585 tags)")
    captioner: Any = setting(None, flag=False, form=False,
                             help="a Tag2Text model whose captions add tags in generation ('model': each round's "
                                  "own model when it writes captions)")
    train: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                    help="the first training's settings (weak_start, captions, processes, and the "
                                         "fine-tuning recipe's)")
    retrain: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                      help="each round's retraining settings (as train)")
    finetune: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                       help="each round's fine-tuning on the verified view (as train)")
    generate: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                       help="the generation job's settings (threshold, batch_size, executor...)")
    clean: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                    help="the cleaning job's settings (regions_field or detector, embedder, "
                                         "fraction, executor...)")
    evaluate: dict[str, Any] = setting(factory=dict, flag=False, form=False,
                                       help="the evaluation job's settings (classes, top_k, ties, empty_classes, "
                                            "mapping)")
    resume: bool = setting(False, form=False, help="continue the pipeline of this prefix where it stopped")

    def check_values(self) -> None:
        super().check_values()
        if not isinstance(self.prefix, str) or not self.prefix.isidentifier():
            raise PipelineError(f"prefix (CLI: --prefix): {self.prefix!r} is not a valid field name (letters, digits "
                                f"and underscores)")
        if self.caption_field is None and self.tag_field is None:
            raise PipelineError("give a caption field (caption_field), an existing tag field (tag_field) or both: "
                                "what round 0's tags come from")
        if not self.validation:
            raise PipelineError("give a validation view (validation: a saved view or a sample tag): every round's "
                                "model is scored on it")
        if self.truth_field is None:
            raise PipelineError("give the validation samples' trusted tags (validation_field, or a reference_field)")
        if self.finetune_field and not self.finetune_view:
            raise PipelineError("finetune_field names the tags of the verified view: give finetune_view too")
        for name in ("train", "retrain", "finetune", "generate", "clean", "evaluate"):
            if not isinstance(getattr(self, name), Mapping):
                raise PipelineError(f"{name} must be a mapping of settings, not {getattr(self, name)!r}")
        self.model_spec()
        for stage in TRAINING_STAGES:
            self.training(stage)
        self.generation(out_field="check")
        self.cleaning(tag_field="check")
        self.evaluation(pred_field="check_pred", gt_field="check_gt", eval_key=None)

    # -- what each stage's job is made of ------------------------------------------------------------------------
    @property
    def truth_field(self) -> str | None:
        """The validation samples' trusted tags."""
        return self.validation_field or self.reference_field or self.tag_field

    def model_spec(self):
        """The starting model as a ``TaggerSpec`` (checked, not loaded)."""
        return tagger_spec(self.model, "model")

    def captioner_spec(self):
        """The captioner's spec, None, or ``"model"`` (each round's own model)."""
        if self.captioner in (None, "model"):
            return self.captioner
        return tagger_spec(self.captioner, "captioner")

    def training(self, stage: str) -> TrainingStage:
        return TrainingStage.of(getattr(self, stage), stage)

    def generation(self, **fixed: Any) -> GenerateJob:
        return _stage_job(GenerateJob, self.generate, "generate", parser_tags=self.parser_tags, **fixed)

    def cleaning(self, **fixed: Any) -> CleanJob:
        return _stage_job(CleanJob, self.clean, "clean", **fixed)

    def evaluation(self, **fixed: Any) -> EvaluateJob:
        return _stage_job(EvaluateJob, self.evaluate, "evaluate", replace=True, **fixed)

    def accepts(self, reason: str | None, score: float | None) -> bool:
        """Whether the automatic review accepts the removal of a tag flagged for ``reason`` with ``score``."""
        if reason not in self.accept_reasons:
            return False
        if reason == "outlier" and self.min_outlier_score is not None:
            return score is not None and score >= self.min_outlier_score
        return True

    def plan(self) -> list[tuple[int, str]]:
        """(round, stage) in the order they run: round 0 parses and scores the starting model; round 1 trains the
        first model; every round generates, cleans, reviews, retrains, fine-tunes and scores; each round ends by
        publishing its tags (``"publish"``)."""
        chosen = set(self.stages)
        steps = [(0, s) for s in ("parse", "evaluate") if s in chosen] + [(0, "publish")]
        for number in range(1, self.rounds + 1):
            for stage in STAGES[1:]:
                if stage not in chosen or (stage == "train" and number > 1):
                    continue
                if stage == "finetune" and not self.finetune_view:
                    continue
                if stage == "review" and "clean" not in chosen:
                    continue
                steps.append((number, stage))
            steps.append((number, "publish"))
        return steps

    def to_spec(self) -> dict[str, Any]:
        """The spec as plain values (what the pipeline's record holds and a spec file says)."""
        out = self.to_dict()
        out.pop("resume")
        out["model"] = self.model_spec().to_dict()
        captioner = self.captioner_spec()
        out["captioner"] = captioner.to_dict() if hasattr(captioner, "to_dict") else captioner
        return out


#: Settings that may differ when a pipeline is resumed (they do not change what the rounds done computed).
RESUMABLE_CHANGES = ("rounds", "resume", "review", "accept_reasons", "min_outlier_score")


def tagger_spec(value: Any, what: str):
    """A spec's model entry as a ``TaggerSpec``: a released variant or folder (a string), or the spec's fields."""
    from fiftyone_ram.tagger_spec import TaggerSpec

    try:
        if value is None or isinstance(value, (str, Path)):
            return TaggerSpec.of(str(value) if value is not None else _default_model())
        if isinstance(value, TaggerSpec):
            return value
        if isinstance(value, Mapping):
            return TaggerSpec.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"{what}: {exc}") from None
    raise PipelineError(f"{what} must be a model name, a folder or a mapping of the tagger's settings, not "
                        f"{value!r}")


def _default_model() -> str:
    from fiftyone_ram.models.registry import DEFAULT_VARIANT

    return DEFAULT_VARIANT


def _stage_job(cls: type, values: Mapping[str, Any], stage: str, **fixed: Any):
    """A stage's job from the spec's mapping, the pipeline's own values on top (a mapping that sets one is
    refused in one line)."""
    taken = sorted(set(values) & set(RESERVED[stage]))
    if taken:
        raise PipelineError(f"{stage}: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by the "
                            f"pipeline")
    try:
        return cls.from_values(dict(values), **fixed)
    except UserError as exc:
        raise PipelineError(f"{stage}: {exc}") from None


@dataclass(frozen=True)
class Names:
    """Where everything a pipeline writes goes: fields, saved views, evaluation keys, run targets, folders."""

    prefix: str
    output_dir: str

    @property
    def current(self) -> str:
        """The tags of the last round published: the field a user works with."""
        return self.prefix

    def labels(self, number: int) -> str:
        return f"{self.prefix}_r{number}"

    def review(self, number: int) -> str:
        return default_fields(self.labels(number))["review_field"]

    def cleaned(self, number: int) -> str:
        return default_fields(self.labels(number))["cleaned_field"]

    def flagged_view(self, number: int) -> str:
        return default_fields(self.labels(number))["view_name"]

    def predictions(self, number: int) -> str:
        return f"{self.prefix}_r{number}_val"

    def eval_key(self, number: int) -> str:
        return f"{self.prefix}_r{number}_eval"

    def training(self, number: int, stage: str) -> str:
        """The run store target of a training stage (kind ``finetune``)."""
        return f"{self.prefix}_r{number}_{stage}"

    def folder(self, number: int, stage: str) -> Path:
        return Path(self.output_dir) / f"round{number}" / stage

    @property
    def figure(self) -> Path:
        return Path(self.output_dir) / "report.png"


def load_spec(source: Any, **changes: Any) -> PipelineJob:
    """A :class:`PipelineJob` from a job, a mapping of its settings, or a YAML / JSON file; ``changes`` (the command
    line's options, a form's values) replace the source's values. A bad file, key or value is one line."""
    if isinstance(source, PipelineJob):
        values = dataclasses.asdict(source)
    elif isinstance(source, Mapping):
        values = dict(source)
    elif isinstance(source, (str, Path)):
        values = read_spec_file(Path(source))
    elif source is None:
        values = {}
    else:
        raise PipelineError(f"a pipeline spec is a file, a mapping or a PipelineJob, not {type(source).__name__}")
    values.update({k: v for k, v in changes.items() if v is not None})
    for name in ("dataset", "output_dir"):
        if not values.get(name):
            raise PipelineError(f"the spec does not name {name!r}")
    try:
        return PipelineJob.from_values(values)
    except PipelineError:
        raise
    except UserError as exc:
        raise PipelineError(f"pipeline spec: {exc}") from None
    except TypeError as exc:  # a setting of the wrong shape
        raise PipelineError(f"pipeline spec: {exc}") from None


def read_spec_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML (``.yaml`` / ``.yml``) or JSON file holds."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"cannot read the pipeline spec {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as exc:  # noqa: BLE001  yaml's and json's errors: one line naming the file
        first = " ".join(str(exc).split())[:200]
        raise PipelineError(f"the pipeline spec {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: "
                            f"{first}") from None
    if not isinstance(values, Mapping):
        raise PipelineError(f"the pipeline spec {path} must hold a mapping of settings, not "
                            f"{type(values).__name__}")
    return dict(values)
