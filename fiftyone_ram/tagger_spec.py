"""How to load a tagger, as one value: what ``load_tagger`` takes, and what rebuilds the same tagger elsewhere.

A :class:`TaggerSpec` names the architecture, the weights, the checkpoint's own files (tag list, Chinese names,
thresholds, caption tokenizer), the vocabulary asked (:class:`~fiftyone_ram.vocabulary.spec.VocabularySpec`)
and how to run it (precision, device, batch size). Every door fills one (the CLI's model options, the App's
forms, the FiftyOne model's config, fine-tuning); every process that needs the tagger again loads it from one
(``load_tagger(spec)``): Ray actors, DataLoader workers, the delegated executor. A loaded tagger keeps the spec
it came from (``Tagger.spec``: the checkpoint that was read, the precision it resolved to), so it can be
handed on without its weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fiftyone_ram.errors import OptionError
from fiftyone_ram.vocabulary.spec import VocabularySpec

#: Images per model call when nothing else is said: on two CPU cores the released Swin-L runs as fast per image
#: at 4 as at 8 and peaks lower (docs/benchmarks.md); a GPU run asks for more.
BATCH_SIZE = 4

PathOrList = str | Path | Sequence[Any]


@dataclass(frozen=True)
class TaggerSpec:
    """A tagger to load.

    model: a released variant (``ram_plus_swin_large_14m``, ...), an architecture JSON file or dict (or a
        ``ModelConfig``), a model folder written by fine-tuning, or None: the architecture read from the
        checkpoint's tensor shapes
    checkpoint: the weights (an upstream-layout ``.pth``) or a model folder; None: the released weights of
        ``model`` (downloaded once)
    family: ``ram`` | ``ram_plus`` | ``tag2text`` where neither the config nor the checkpoint says
    tag_list, tag_list_chinese, thresholds: the checkpoint's own files (or lists) instead of upstream's
    tokenizer: Tag2Text: the captioner's vocab.txt when it is not bert-base-uncased's
    vocabulary: what to answer instead of the checkpoint's tags (subset, new tags)
    precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` | ``int8``; None: ``$FIFTYONE_RAM_PRECISION``, else auto
    device: ``cpu``, ``cuda``, ``cuda:1``...; None: CUDA when there is one
    batch_size: images per model call
    caption_branch: RAM: also load the tag encoder and text decoder (training's caption loss)
    compile: ``torch.compile`` the image encoder and the tagging head (``Tagger.compile``)
    """

    model: Any = None
    checkpoint: str | Path | None = None
    family: str | None = None
    tag_list: PathOrList | None = None
    tag_list_chinese: PathOrList | None = None
    thresholds: PathOrList | None = None
    tokenizer: str | Path | None = None
    vocabulary: VocabularySpec | None = None
    precision: str | None = None
    device: str | None = None
    batch_size: int = BATCH_SIZE
    caption_branch: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", VocabularySpec.of(self.vocabulary))
        if self.device is not None and not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise OptionError(f"batch_size must be a whole number of at least 1, not {self.batch_size!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, model: Any = None, checkpoint: str | Path | None = None, **changes: Any) -> TaggerSpec:
        """A spec from ``load_tagger``'s arguments: a spec (its fields replaced by ``changes``), or the model and
        checkpoint with the other fields as keywords."""
        unknown = sorted(set(changes) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown tagger option(s) {', '.join(unknown)}; the options are {', '.join(cls.names())}")
        if isinstance(model, TaggerSpec):
            given = {"checkpoint": checkpoint} if checkpoint is not None else {}
            return replace(model, **given, **changes)
        return cls(model=model, checkpoint=checkpoint, **changes)

    def replace(self, **changes: Any) -> TaggerSpec:
        return replace(self, **changes)

    @property
    def portable(self) -> bool:
        """Whether :meth:`to_dict` can carry it to another process (no object in memory among its inputs)."""
        return self.vocabulary is None or self.vocabulary.portable

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON): what FiftyOne configs store and other processes load from."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if name == "vocabulary":
                value = self.vocabulary.to_dict() if self.vocabulary is not None else None
            elif name == "model" and hasattr(self.model, "to_dict"):
                value = self.model.to_dict()
            else:
                value = _plain(value)
            if name == "batch_size" and value == BATCH_SIZE:
                continue  # the default: said by leaving it out
            if value is not None and value is not False:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TaggerSpec:
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise OptionError(f"unknown tagger option(s) {', '.join(unknown)}")
        return cls(**dict(values))


def _plain(value: Any) -> Any:
    if isinstance(value, Path) or hasattr(value, "__fspath__"):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays of thresholds
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
