"""The comparators (CLIP, SigLIP, BLIP, Grounding-DINO, and our taggers over any classes) as a FiftyOne ``Model``.

What ends up in the label field (``fo.Classifications``), as for :class:`~fiftyone_ram.fiftyone.model.RamModel`:
one ``Classification`` per tag whose score is strictly above the threshold (``confidence`` = the score,
attribute ``threshold``), and with ``store_logits`` the ``logits`` over the scorer's classes (their sigmoid is
the score: what the evaluation's mAP reads). The scores' meaning per kind is in
:mod:`fiftyone_ram.comparators`. One threshold for all tags (``confidence_thresh``, default 0.5): comparisons
then tune thresholds on the stored scores and decide the tags again.

Images are decoded in DataLoader workers to RGB PIL images (each model's own processor resizes them); an
unreadable image yields ``{"error": message}``, which ``apply_model`` stores in ``<label_field>_error``.
"""

from __future__ import annotations

from typing import Any

import fiftyone.core.config as foc
import numpy as np

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.fiftyone.inputs import RgbGetItem, UnreadableImage, collate_list, read_input
from fiftyone_ram.fiftyone.model import ImageTaggerModel
from fiftyone_ram.fiftyone.outputs import decide_outputs
from fiftyone_ram.images import load_image

#: The threshold of the tags a comparator stores before a comparison tunes its own.
DEFAULT_THRESHOLD = 0.5


class ComparatorModelConfig(foc.Config):
    """Settings of a :class:`ComparatorModel` (JSON, so that ``fom.load_model`` can build one).

    choice: the model, as ``KIND[=SOURCE][,KEY=VALUE...]`` (``fiftyone_ram.comparators.choice``)
    classes: the tags to score (a benchmark's classes, a user's list, RAM's 4,585 tags)
    device: ``cpu``, ``cuda``... (default: CUDA when there is one)
    templates: prompt templates of the dual encoders (a file or a list; default: upstream's)
    text_encoder: the CLIP text model of RAM / RAM++'s classes outside their tag list
    batch_size: images per model call
    confidence_thresh: the one threshold of the stored tags (default 0.5)
    """

    def __init__(self, d: dict[str, Any]) -> None:
        self.choice = self.parse_string(d, "choice")
        self.classes = self.parse_array(d, "classes")
        self.device = self.parse_string(d, "device", default=None)
        self.templates = self.parse_raw(d, "templates", default=None)
        self.text_encoder = self.parse_string(d, "text_encoder", default=None)
        self.batch_size = self.parse_int(d, "batch_size", default=None)
        self.confidence_thresh = self.parse_number(d, "confidence_thresh", default=DEFAULT_THRESHOLD)
        check_threshold(self.confidence_thresh, "confidence_thresh")


class ComparatorModel(ImageTaggerModel):
    """A comparator wrapped for ``apply_model``; its scorer loads on first use (or is given, loaded)."""

    def __init__(self, config: ComparatorModelConfig, scorer: Any = None) -> None:
        super().__init__()
        self.config = config
        self._scorer = scorer

    @property
    def scorer(self):
        if self._scorer is None:
            from fiftyone_ram.comparators import load_scorer, parse_choice

            c = self.config
            self._scorer = load_scorer(parse_choice(c.choice), c.classes, device=c.device, templates=c.templates,
                                       text_encoder=c.text_encoder, batch_size=c.batch_size)
        return self._scorer

    @property
    def classes(self) -> list[str]:
        """The classes the logits are over (a tagger that cannot answer new tags scores fewer than asked)."""
        return list(self.scorer.classes)

    # -- fom.Model ---------------------------------------------------------------------------------------------
    @property
    def ragged_batches(self) -> bool:
        return False  # the collate function keeps images of any size in a list

    @property
    def transforms(self):
        return load_image

    collate_fn = staticmethod(collate_list)

    @property
    def _using_gpu(self) -> bool:  # read by apply_model(pin_memory=True)
        return getattr(self.scorer.device, "type", "cpu") == "cuda"

    def build_get_item(self, field_mapping: dict[str, str] | None = None) -> RgbGetItem:
        return RgbGetItem(field_mapping=field_mapping)

    def predict(self, arg):
        return self.predict_all([arg])[0]

    def predict_all(self, args) -> list:
        """A ``Classifications`` per readable input, ``{"error": message}`` per unreadable one. ``args``: what the
        DataLoader collated (PIL images and markers), or paths / PIL images / HWC arrays."""
        items = [a if isinstance(a, UnreadableImage) else read_input(a, load_image) for a in args]
        out: list = [{"error": item.message} if isinstance(item, UnreadableImage) else None for item in items]
        readable = [i for i, item in enumerate(items) if not isinstance(item, UnreadableImage)]
        if not readable:
            return out
        logits = np.asarray(self.scorer.logits([items[i] for i in readable]), dtype=np.float32)
        with np.errstate(over="ignore"):  # as the evaluation reads them: float64, then float32
            probs = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        count = logits.shape[1]
        limits = np.full(count, self.config.confidence_thresh, dtype=np.float32)
        outputs = decide_outputs(probs, np.arange(count), limits, self.classes, np.zeros(count, dtype=bool),
                                 logits=logits if self.store_logits else None)
        for i, output in zip(readable, outputs, strict=True):
            out[i] = output.to_label()
        return out


def comparator_model(choice: Any, classes: Any, *, scorer: Any = None, **settings: Any) -> ComparatorModel:
    """A :class:`ComparatorModel` of ``choice`` over ``classes`` (``settings``: the config's other keys); with
    ``scorer``, already loaded. The model loads here, so that a missing one fails now."""
    values = {"choice": str(choice), "classes": list(classes),
              **{k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in settings.items() if v is not None}}
    model = ComparatorModel(ComparatorModelConfig(values), scorer=scorer)
    model.scorer  # noqa: B018  (loads it)
    return model
