"""The fine-tuning job: what to learn from and where to write it (:class:`FinetuneJob`), over the recipe's
settings (:class:`~fiftyone_ram.training.settings.FinetuneSettings`). The command line and the App's form are
built from both; :func:`fiftyone_ram.training.finetune` does the work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fiftyone_ram.errors import OptionError
from fiftyone_ram.jobs import FIELD, PATH, Job, setting
from fiftyone_ram.training.settings import WEAK_START, FinetuneSettings


@dataclass(kw_only=True)
class FinetuneJob(Job):
    """A fine-tuning run: the output folder, the targets, and the recipe (upstream's, or the weak-start one, with
    the user's changes on top: only the values the user gives replace the recipe's)."""

    what = "fine-tuning"

    output_dir: str = setting(flag="--output", label="Output folder",
                              help="the model folder to write (checkpoint, config, tag list, thresholds, log)")
    tag_field: str | None = setting(None, kind=FIELD, label="Ground-truth tags",
                                    help="the tags to learn: Classifications, Classification, Detections, Polylines "
                                         "or a list of strings such as 'tags'")
    caption_field: str | None = setting(None, kind=FIELD, label="Captions",
                                        help="captions to learn from: a string or list-of-strings field")
    validation_field: str | None = setting(None, kind=FIELD, label="Validation ground truth",
                                           help="the validation view's ground-truth tags, when they are not in the "
                                                "tag field (default: what training reads)")
    parser_tags: str | None = setting(None, kind=PATH, label="Tag list for parsing",
                                      help="tag list or saved label system file for parsing captions (default: the "
                                           "model's tags)")
    mapping: str | None = setting(None, kind=PATH, label="Name mapping file",
                                  help="the tag field's names to model tags: a JSON object or CSV rows "
                                       "gt_name,model_name")
    weak_start: bool = setting(False, label="Weak start",
                               help="a recipe that learns from a weak (random or far-off) start instead of "
                                    "upstream's; the other settings given still replace its values")
    resume: bool = setting(False, form=False, help="continue the interrupted run in the output folder")
    overwrite: bool = setting(False, form=False,
                              help="replace a previous run's files in a non-empty output folder (other files stay)")
    #: The recipe's values the user gave (FinetuneSettings' names), applied over the recipe.
    changes: dict[str, Any] = field(default_factory=dict)

    def check_values(self) -> None:
        super().check_values()
        if self.tag_field is None and self.caption_field is None:
            raise OptionError("give a tag field (--tag-field), a caption field (--caption-field) or both: what the "
                              "model should learn")
        self.recipe()  # a bad value fails here, in one line

    def recipe(self) -> FinetuneSettings:
        """The settings the run uses: the recipe chosen, with :attr:`changes` on top."""
        return FinetuneSettings.from_dict({**(WEAK_START if self.weak_start else {}), **self.changes})

    def run(self, samples: Any, model: Any, *, validation: Any = None, progress: bool | Callable | None = True,
            messages: Callable[[str], None] | None = None):
        """Fine-tune ``model`` (a ``TaggerSpec``, or what ``load_tagger`` takes) on ``samples``."""
        from fiftyone_ram.training.trainer import finetune

        return finetune(samples, self.output_dir, model=model, tag_field=self.tag_field,
                        caption_field=self.caption_field, validation=validation,
                        validation_field=self.validation_field, caption_parser=self.parser_tags,
                        mapping=self.mapping, settings=self.recipe(), resume_run=self.resume,
                        overwrite=self.overwrite, progress=progress, messages=messages)
