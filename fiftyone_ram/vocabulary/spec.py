"""What a user asks a tagger to answer instead of its checkpoint's own tags, as one value.

Every door that takes a vocabulary (``load_tagger``, the FiftyOne model's config, fine-tuning, the CLI's
``--tags`` / ``--descriptions`` ..., the App's form) fills a :class:`VocabularySpec`; only
:meth:`VocabularySpec.build` turns it into a :class:`~fiftyone_ram.vocabulary.vocabulary.Vocabulary`. Paths and
names stay as given, so the spec travels to other processes (Ray actors, DataLoader workers, the delegated
executor) and rebuilds the same vocabulary there (new tags' embeddings come from the cache).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fiftyone_ram.vocabulary.sources import DescriptionSource, TagSource, VocabularyError


@dataclass(frozen=True)
class VocabularySpec:
    """The vocabulary a tagger answers (see :meth:`build`).

    tags: the tags to answer (a file, one tag per line, or a list); default: the described tags when
        ``descriptions`` is given, else all of the checkpoint's tags
    descriptions: RAM++: tag descriptions (upstream's JSON layout, a file or the same in memory)
    keep_builtin: the checkpoint's tags first, then the given ones that are not among them
    new_tag_threshold: the threshold of embedded (new) tags; None: upstream's open-set default
    tag_thresholds: ``{tag: threshold}`` overrides, any tag
    text_encoder: the CLIP text model that embeds new tags (hub name or folder; an encoder object works here
        but cannot travel to another process); None: the default
    templates: prompt templates of new tags ("{}" is the tag); None: upstream's
    """

    tags: TagSource | None = None
    descriptions: DescriptionSource | None = None
    keep_builtin: bool = False
    new_tag_threshold: float | None = None
    tag_thresholds: Mapping[str, float] | None = None
    text_encoder: Any = None
    templates: Sequence[str] | None = None

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

    def build(self, family: str | Any, tag_list: Sequence[str] | None = None, thresholds: Any = None, *,
              cache: Any = True, device: Any = "cpu"):
        """The :class:`~fiftyone_ram.vocabulary.vocabulary.Vocabulary` over a base of tags (a family, its tag list
        and thresholds; or a loaded tagger standing for all three and the device)."""
        from fiftyone_ram.vocabulary.vocabulary import build_vocabulary

        return build_vocabulary(family, tag_list, thresholds, self, cache=cache, device=device)
