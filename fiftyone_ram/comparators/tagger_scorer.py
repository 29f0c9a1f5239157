"""Our taggers (RAM, RAM++, Tag2Text) as comparators: their sigmoid scores over the compared classes.

A class outside the checkpoint's tag list is embedded as upstream's open set (RAM: prompt ensemble; RAM++:
the templates' embeddings), which needs the CLIP text encoder; Tag2Text cannot answer new tags (its queries are
learned), so they are left out of its classes (``unsupported``) and of its figures. The tagger's own thresholds
play no part: a comparison tunes every model's thresholds the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fiftyone_ram.comparators.choice import ModelChoice


def tagger_spec(choice: ModelChoice, device: str | None = None):
    """The :class:`~fiftyone_ram.tagger_spec.TaggerSpec` a choice names: a released variant (default: the
    family's), or a checkpoint / model folder with its own architecture and files."""
    from fiftyone_ram.models.registry import is_variant, list_variants
    from fiftyone_ram.tagger_spec import TaggerSpec

    model, checkpoint = choice.option("config"), choice.option("checkpoint")
    if choice.source and is_variant(choice.source):
        model = model or choice.source
    elif choice.source:
        checkpoint = checkpoint or choice.source
    if model is None and checkpoint is None:
        model = list_variants(choice.kind)[0]
    return TaggerSpec(model=model, checkpoint=checkpoint, family=choice.kind, tag_list=choice.option("tag_list"),
                      thresholds=choice.option("thresholds"), precision=choice.option("precision"), device=device)


class TaggerScorer:
    """A loaded tagger answering ``classes`` (see the module docstring)."""

    def __init__(self, choice: ModelChoice, classes: Sequence[str], *, device: str | None = None,
                 templates: Sequence[str] | str | None = None, text_encoder: Any = None,
                 batch_size: int | None = None) -> None:
        from fiftyone_ram.tagger import load_tagger

        spec = tagger_spec(choice, device)
        self.tagger = load_tagger(spec if batch_size is None else spec.replace(batch_size=batch_size))
        known = set(self.tagger.tag_list)
        new = [c for c in classes if c not in known]
        if new and self.tagger.family != "tag2text":
            from fiftyone_ram.vocabulary import build_vocabulary

            vocabulary = build_vocabulary(self.tagger, tags=list(classes), text_encoder=text_encoder,
                                          templates=templates)
            self.tagger = self.tagger.with_vocabulary(vocabulary)
            new = []
        self.classes = [c for c in classes if c not in set(new)]
        self.unsupported = new
        self.device = self.tagger.device

    @property
    def description(self) -> str:
        name = self.tagger.config.name or f"custom {self.tagger.family}"
        return f"{self.tagger.family} {name} ({self.tagger.precision})"

    def logits(self, images: Sequence[Any]) -> np.ndarray:
        parts = []
        for batch in self.tagger.iter_batches(list(images), tags=self.classes, batch_size=max(len(images), 1)):
            batch.raise_errors()
            parts.append(batch.logits)
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, len(self.classes)), np.float32)
