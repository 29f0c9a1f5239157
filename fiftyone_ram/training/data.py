"""Training examples from a FiftyOne view: images, tag targets over the tagger's classes, captions.

Tags come from any field the evaluation accepts (``Classifications``, ``Classification``, ``Detections``,
``Polylines``, or a list of strings such as the sample ``tags``), mapped onto the tagger's tag list with the
evaluation's :class:`~fiftyone_ram.evaluation.mapping.NameMapper` (names it cannot map are reported,
never guessed). Captions come from a string or list-of-strings field, cleaned as upstream's dataset cleans them
and parsed into tags with the caption parser: as upstream, each step samples one caption per image, the tags
parsed from *that* caption condition the caption loss, and the tagging target is the union of the field's
tags and the tags of all the image's captions.

Order and augmentation are functions of (seed, epoch, position) only: a resumed run sees the very batches an
uninterrupted one would, whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from fiftyone_ram.errors import UserError
from fiftyone_ram.images import ImageError, load_image

#: upstream's caption cleaning keeps at most this many words
CAPTION_WORDS = 30
_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def clean_caption(text: str, max_words: int = CAPTION_WORDS) -> str:
    """Upstream's ``pre_caption``: lower case, ``.!"()*#:;~`` become spaces, runs of spaces one, first words."""
    text = _SPACES.sub(" ", _PUNCTUATION.sub(" ", text.lower())).rstrip("\n").strip(" ")
    return " ".join(text.split(" ")[:max_words])


class TrainingDataError(UserError, ValueError):
    """Training or validation samples that cannot teach the model anything (a field of the wrong kind, no
    labels, labels outside the vocabulary)."""


@dataclass
class Examples:
    """Per training sample, in the view's order: its id, image, target classes and captions."""

    sample_ids: list[str]
    filepaths: list[str]
    tags: list[list[int]]  # tagging target: field tags ∪ tags parsed from every caption
    captions: list[list[str]] | None = None  # cleaned captions
    parsed: list[list[list[int]]] | None = None  # per caption, the classes parsed from it
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def samples_digest(self) -> str:
        return _digest(self.sample_ids)

    def targets_digest(self) -> str:
        """What is learnt from each sample (its classes, its captions and their classes): a resumed run must
        learn the same."""
        return _digest([self.tags, self.captions, self.parsed])


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


def check_fields(samples: Any, tag_field: str | None, caption_field: str | None) -> None:
    """The label and caption fields exist and hold what training reads, before anything is loaded."""
    from fiftyone_ram.fields import TAG_LABEL_TYPES, field_kind

    if tag_field is None and caption_field is None:
        raise TrainingDataError("give a tag field, a caption field, or both (tag_field= / --tag-field, "
                                "caption_field= / --caption-field): what the model should learn")
    if tag_field is not None:
        try:
            field_kind(samples, tag_field, TAG_LABEL_TYPES, "tag", allow_strings=True)
        except ValueError as exc:
            raise TrainingDataError(str(exc)) from None
    if caption_field is not None:
        _check_caption_field(samples, caption_field)


def check_examples(examples: Examples, *, tag_field: str | None, caption_field: str | None,
                   where: str = "the training view", option: str = "") -> None:
    """Refuse examples that teach nothing: no sample with the field set, or no label in the vocabulary."""
    report = examples.report
    source = " and ".join(f"'{f}'" for f in (tag_field, caption_field) if f)
    if not len(examples):
        raise TrainingDataError(f"{where} has no labels: none of its {report['samples']} sample(s) has {source} "
                                f"set{option}")
    if report["positives"]:
        return
    counts = report.get("label_counts") or {}
    if tag_field is not None and counts and not report.get("mapped_labels"):
        names = sorted(counts, key=lambda n: (-counts[n], n))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise TrainingDataError(f"none of the {len(names)} label name(s) of '{tag_field}' in {where} ({shown}) is in "
                                f"the model's vocabulary: map them with mapping= / --mapping or add them with tags= / "
                                f"--tags")
    raise TrainingDataError(f"{where} has no label in the model's vocabulary in {source}: label its samples"
                            f"{option}, map names with mapping= / --mapping, or add tags with tags= / --tags")


def read_examples(samples: Any, tag_list: list[str], *, tag_field: str | None = None,
                  caption_field: str | None = None, mapping: Any = None, parser: Any = None) -> Examples:
    """The examples of ``samples``; ``parser`` (a ``CaptionParser``) is only needed with ``caption_field``.

    A sample is left out when its label field is unset (unlabelled, not "no tags"), or with a caption field,
    when it has no caption; the report counts those, the tags that map to no class, and the mapping used.
    """
    from fiftyone_ram.evaluation.mapping import NameMapper
    from fiftyone_ram.fields import read_tags

    check_fields(samples, tag_field, caption_field)
    report: dict[str, Any] = {"samples": samples.count()}
    view = samples
    if tag_field is not None and tag_field != "tags" and samples.get_field(tag_field) is not None:
        view = view.exists(tag_field)
    if caption_field is not None:
        view = view.exists(caption_field)
    sample_ids, filepaths = view.values("id"), view.values("filepath")
    index = {name: i for i, name in reversed(list(enumerate(tag_list)))}
    tags: list[set[int]] = [set() for _ in sample_ids]
    if tag_field is not None:
        names = read_tags(view, tag_field).names
        mapper = NameMapper(tag_list, mapping=mapping)
        counts: dict[str, int] = {}
        for row in names:
            for name in row:
                counts[name] = counts.get(name, 0) + 1
        vocabulary = mapper.report(counts)
        mapped = vocabulary.mapped()
        for row, target in zip(names, tags):
            target.update(index[mapped[n]] for n in row if n in mapped)
        report["vocabulary"] = vocabulary.to_dict()
        report["unmapped"] = {name: counts[name] for name in vocabulary.unmapped()}
        report["label_counts"] = counts
        report["mapped_labels"] = sum(counts[n] for n in counts if n in mapped)
    examples = Examples(list(sample_ids), list(filepaths), [], report=report)
    if caption_field is not None:
        parser_names = parser.label_system.names
        to_class = {i: index[name] for i, name in enumerate(parser_names) if name in index}
        captions, parsed = [], []
        for value in view.values(caption_field):
            texts = [value] if isinstance(value, str) else list(value or ())
            cleaned = [clean_caption(t) for t in texts if t and t.strip()]
            captions.append(cleaned)
            parsed.append([sorted({to_class[i] for i in parser.parse(t) if i in to_class}) for t in cleaned])
        keep = [i for i, c in enumerate(captions) if c]
        examples.captions = [captions[i] for i in keep]
        examples.parsed = [parsed[i] for i in keep]
        for i in keep:
            for classes in parsed[i]:
                tags[i].update(classes)
        examples.sample_ids = [examples.sample_ids[i] for i in keep]
        examples.filepaths = [examples.filepaths[i] for i in keep]
        tags = [tags[i] for i in keep]
    examples.tags = [sorted(t) for t in tags]
    report["used"] = len(examples)
    report["left_out"] = report["samples"] - len(examples)
    report["positives"] = sum(len(t) for t in examples.tags)
    return examples


def _check_caption_field(samples: Any, name: str) -> None:
    import fiftyone.core.fields as fof

    found = samples.get_field(name)
    ok = isinstance(found, fof.StringField) or (isinstance(found, fof.ListField)
                                                and isinstance(found.field, fof.StringField))
    if found is None:
        raise TrainingDataError(f"caption field '{name}' does not exist in this collection; expected a string or "
                                f"list-of-strings field")
    if not ok:
        kind = type(found).__name__
        if isinstance(found, fof.EmbeddedDocumentField):
            kind = found.document_type.__name__
        elif isinstance(found, fof.ListField) and found.field is not None:
            kind = f"a list of {type(found.field).__name__}"
        raise TrainingDataError(f"caption field '{name}' must hold a string or a list of strings per sample, not "
                                f"{kind}")


#: Generator seeds are taken modulo this (torch takes at most 64 bits): any setting's seed works.
SEED_RANGE = 2 ** 63


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % SEED_RANGE


def epoch_batches(count: int, batch_size: int, epoch: int, seed: int, *, rank: int = 0, world: int = 1
                  ) -> list[list[tuple[int, int]]]:
    """This process's batches of an epoch: a permutation of the examples seeded by (seed, epoch), padded by
    wrapping to a multiple of the processes (as ``DistributedSampler``), every ``world``-th from ``rank``, cut
    into batches (the last one may be smaller). Items are ``(epoch, example)``."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(count, generator=generator).tolist()
    padded = order + order[:(-len(order)) % world]
    mine = padded[rank::world]
    return [[(epoch, i) for i in mine[start:start + batch_size]] for start in range(0, len(mine), batch_size)]


def batches_per_epoch(count: int, batch_size: int, world: int = 1) -> int:
    per_process = -(-count // world)
    return -(-per_process // batch_size)


class TrainingImages(torch.utils.data.Dataset):
    """Augmented images of :class:`Examples`, indexed by ``(epoch, example)``: each item's randomness (crops,
    flips, RandAugment, the sampled caption) comes from a generator seeded by (seed, epoch, example)."""

    def __init__(self, examples: Examples, transform, teacher_transform=None, *, seed: int = 0) -> None:
        self.examples = examples
        self.transform = transform
        self.teacher_transform = teacher_transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, i = item
        with torch.random.fork_rng(devices=[]):  # torchvision's transforms draw from the global generator
            torch.manual_seed((epoch_seed(self.seed, epoch) * 10_000_019 + i) % SEED_RANGE)
            try:
                image = load_image(self.examples.filepaths[i])
            except ImageError as exc:
                raise ImageError(f"training image of sample {self.examples.sample_ids[i]}: {exc}") from exc
            out: dict[str, Any] = {"index": i, "pixel_values": self.transform(image)}
            if self.teacher_transform is not None:
                out["teacher_pixels"] = self.teacher_transform(image)
            if self.examples.captions is not None:
                choice = int(torch.randint(len(self.examples.captions[i]), ()))
                out["caption"] = self.examples.captions[i][choice]
                out["parsed"] = self.examples.parsed[i][choice]
        return out


def collate(items: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """Stack a batch; targets become (B, C) multi-hot over the tagger's classes."""
    examples = [item["index"] for item in items]
    out: dict[str, Any] = {"index": examples, "pixel_values": torch.stack([item["pixel_values"] for item in items])}
    if "teacher_pixels" in items[0]:
        out["teacher_pixels"] = torch.stack([item["teacher_pixels"] for item in items])
    if "caption" in items[0]:
        out["captions"] = [item["caption"] for item in items]
        out["parse_targets"] = _multi_hot([item["parsed"] for item in items], num_classes)
    return out


def _multi_hot(rows: list[list[int]], num_classes: int) -> torch.Tensor:
    hot = torch.zeros(len(rows), num_classes, dtype=torch.long)
    for r, classes in enumerate(rows):
        hot[r, classes] = 1
    return hot


def tag_targets(examples: Examples, indices: list[int], num_classes: int) -> torch.Tensor:
    return _multi_hot([examples.tags[i] for i in indices], num_classes)
