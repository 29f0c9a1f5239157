"""What a user asks a tagger to answer instead of its checkpoint's own tags, as one value.

Every door that takes a vocabulary (``load_tagger``, the FiftyOne model's config, fine-tuning, the CLI's
``--tags`` / ``--descriptions`` ..., the App's form) fills a :class:`VocabularySpec`; only
``build_vocabulary`` turns it into a :class:`~fiftyone_ram.vocabulary.vocabulary.Vocabulary`. Paths and
names stay as given, so the spec travels to other processes (Ray actors, DataLoader workers, the delegated
executor) and rebuilds the same vocabulary there (new tags' embeddings come from the cache).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fiftyone_ram.jobs import PATH, THRESHOLD, setting
from fiftyone_ram.vocabulary.sources import DescriptionSource, TagSource, VocabularyError
from fiftyone_ram.hub_models import CLIP as DEFAULT_TEXT_ENCODER

#: Upstream's threshold for open-set tags (``batch_inference.py``, ``inference_ram*_openset.py``).
OPEN_SET_THRESHOLD = 0.5


@dataclass(frozen=True)
class VocabularySpec:
    """The vocabulary a tagger answers (see :meth:`build`; each field's help says what it does). ``tags`` and
    ``descriptions`` may also be given in memory (a list, a mapping); ``text_encoder`` may be an encoder object,
    which then cannot travel to another process."""

    tags: TagSource | None = setting(None, kind=PATH, label="Vocabulary file",
                                     help="answer only these tags (a file, one tag per line): the model's own are "
                                          "selected, new ones embedded with CLIP")
    descriptions: DescriptionSource | None = setting(None, kind=PATH, label="Tag descriptions (RAM++)",
                                                     help="RAM++: tag descriptions in upstream's JSON format "
                                                          "([{tag: [description, ...]}, ...]); without tags, the "
                                                          "described tags are the vocabulary")
    keep_builtin: bool = setting(False, label="Also keep the model's own tags",
                                 help="with tags or descriptions: the model's own tags plus those")
    new_tag_threshold: float | None = setting(None, kind=THRESHOLD, label="Threshold of new tags",
                                              help=f"the threshold of new (embedded) tags; default "
                                                   f"{OPEN_SET_THRESHOLD}, upstream's open set")
    tag_thresholds: Mapping[str, float] | None = setting(None, flag=False, form=False,
                                                         help="{tag: threshold} overrides, any tag")
    text_encoder: Any = setting(None, label="CLIP text encoder",
                                help=f"the CLIP text model that embeds new tags (hub name or folder; default "
                                     f"{DEFAULT_TEXT_ENCODER})")
    templates: Sequence[str] | str | None = setting(None, kind=PATH,
                                                    help="prompt templates of new tags, one per line ({} is the tag; "
                                                         "default: upstream's)")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The spec's keys: what flat keyword doors (the zoo's ``load_model(**kwargs)``) pass through."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, value: VocabularySpec | Mapping[str, Any] | None) -> VocabularySpec | None:
        """``value`` as a spec; None (or an empty one) means the checkpoint's own tags."""
        if value is None or isinstance(value, VocabularySpec):
            spec = value
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.names()))
            if unknown:
                raise VocabularyError(f"unknown vocabulary option(s) {', '.join(unknown)}; the options are "
                                      f"{', '.join(cls.names())}")
            spec = cls(**{k: v for k, v in value.items() if v is not None})
        else:
            raise VocabularyError(f"a vocabulary is a VocabularySpec or a mapping of its options, not "
                                  f"{type(value).__name__}")
        return None if spec is None or spec.is_empty else spec

    @property
    def is_empty(self) -> bool:
        return (self.tags is None and self.descriptions is None and not self.keep_builtin
                and not self.tag_thresholds)

    @property
    def portable(self) -> bool:
        """Whether another process can rebuild it from :meth:`to_dict` (no object in memory among its inputs)."""
        return self.text_encoder is None or isinstance(self.text_encoder, (str, Path))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings, lists), for configs and for other processes."""
        if not self.portable:
            raise VocabularyError("this vocabulary's text encoder is an object in memory: give its hub name or "
                                  "folder so that other processes can embed with it")
        out = {}
        for name, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None and value is not False:
                out[name] = value
        return out
