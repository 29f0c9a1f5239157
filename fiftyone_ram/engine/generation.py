"""Tag generation: the RAM data engine's first step, over a FiftyOne collection.

The paper grew its training tags (4M images: 12.0M -> 41.7M) by adding, to the tags parsed from web
captions, the tags a baseline model predicts and the tags parsed from the captions it writes. Here the same
four sources are merged per sample into one new ``Classifications`` field, each tag saying where it came from:

* ``original``: tags already in the dataset (any field the evaluation reads: ``Classifications``,
  ``Classification``, ``Detections``, ``Polylines``, a list of strings such as the sample ``tags``);
* ``parsed``: tags parsed from caption fields (:class:`~fiftyone_ram.labels.CaptionParser`);
* ``predicted``: tags a tagger predicts (per-class thresholds, or one ``threshold``);
* ``captioned``: tags parsed from the captions a Tag2Text model writes (the caption is kept as the field's
  ``caption`` attribute).

Each ``Classification`` has ``label``, ``confidence`` (the tagger's probability when it predicted the tag,
else None), ``sources`` (every source that gave it, in the order above) and ``source`` (the first). Tags are
merged by their normalised name (case, spacing); the first spelling is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fiftyone_ram.fiftyone.progress import Progress
from fiftyone_ram.labels.label_system import normalize_name

SOURCES = ("original", "parsed", "predicted", "captioned")
CHUNK = 256  # samples per database write (and per progress report)


@dataclass
class GenerationSummary:
    """Per source, tags ``added`` (new to the sample) and ``produced`` (all it proposed)."""

    out_field: str
    samples: int = 0
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    produced: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.added.values())

    def __str__(self) -> str:
        steps = " ".join(f"+{self.added[s]} {s}" for s in SOURCES[1:])
        lines = [f"{self.samples} samples -> '{self.out_field}': {self.added['original']} original {steps} = "
                 f"{self.total} tags"]
        lines += [f"  {s}: proposed {self.produced[s]}, new {self.added[s]}" for s in SOURCES]
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} images could not be read (no predicted/captioned tags)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"out_field": self.out_field, "samples": self.samples, "added": dict(self.added),
                "produced": dict(self.produced), "total": self.total, "unreadable": dict(self.unreadable)}


class _Merged:
    """The tags of one sample, in order of arrival, with their sources and best confidence."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, Any]] = {}

    def add(self, name: str, source: str, confidence: float | None, summary: GenerationSummary) -> None:
        if not name or not name.strip():
            return
        key = normalize_name(name)
        summary.produced[source] += 1
        entry = self.tags.get(key)
        if entry is None:
            self.tags[key] = {"label": name.strip(), "sources": [source], "confidence": confidence}
            summary.added[source] += 1
            return
        if source not in entry["sources"]:
            entry["sources"].append(source)
        if confidence is not None and (entry["confidence"] is None or confidence > entry["confidence"]):
            entry["confidence"] = confidence

    def to_label(self, caption: str | None):
        import fiftyone as fo

        labels = [fo.Classification(label=t["label"], confidence=t["confidence"], sources=t["sources"],
                                    source=t["sources"][0]) for t in self.tags.values()]
        value = fo.Classifications(classifications=labels)
        if caption is not None:
            value["caption"] = caption
        return value


def generate_tags(samples: Any, out_field: str, *, tag_fields: Sequence[str] = (),
                  caption_fields: Sequence[str] = (), tagger: Any = None, captioner: Any = None,
                  parser: Any = None, tag_list: str | None = None, threshold: float | None = None,
                  batch_size: int = 8, caption_options: dict[str, Any] | None = None, overwrite: bool = False,
                  progress: Progress | None = None) -> GenerationSummary:
    """Merge the tags of every source into ``out_field`` of ``samples`` (dataset or view).

    ``tag_fields``: fields with existing tags; ``caption_fields``: string or list-of-strings fields;
    ``tagger``: a loaded tagger (``fiftyone_ram.load_tagger``) whose predictions are added; ``captioner``: a
    Tag2Text tagger (may be the same object) whose captions are parsed; ``parser``: the caption parser
    (default: RAM's label system, or ``tag_list``). Raises if ``out_field`` exists and not ``overwrite``.
    """
    from fiftyone_ram.fiftyone.fields import read_tags

    if not out_field.isidentifier():
        raise ValueError(f"'{out_field}' is not a valid field name (letters, digits and underscores)")
    if out_field in set(tag_fields) | set(caption_fields):
        raise ValueError(f"the output field '{out_field}' is also an input")
    if samples.get_field(out_field) is not None and not overwrite:
        raise ValueError(f"'{out_field}' already exists: pass overwrite (CLI: --overwrite) to replace it")
    if captioner is not None and not captioner.can_caption:
        raise ValueError("the captioner must be a Tag2Text model with its captioning branch")
    if not (tag_fields or caption_fields or tagger or captioner):
        raise ValueError("give at least one source: tag fields, caption fields, a tagger or a captioner")
    if (caption_fields or captioner) and parser is None:
        from fiftyone_ram.labels.caption_parser import load_parser

        parser = load_parser(tag_list)

    summary = GenerationSummary(out_field)
    ids, paths = samples.values("id"), samples.values("filepath")
    originals = [read_tags(samples, name).names for name in tag_fields]
    captions = [samples.values(name) for name in caption_fields]
    summary.samples = len(ids)
    for start in range(0, len(ids), CHUNK):
        block = range(start, min(start + CHUNK, len(ids)))
        merged = {i: _Merged() for i in block}
        for i in block:
            for names in originals:
                for name in names[i]:
                    merged[i].add(name, "original", None, summary)
            for column in captions:
                texts = _texts(column[i])
                for name in parser.tags(texts) if texts else ():
                    merged[i].add(name, "parsed", None, summary)
        written: dict[int, str | None] = dict.fromkeys(block)
        for tagged, captioned in _tag_block([paths[i] for i in block], tagger, captioner, caption_options,
                                            batch_size):
            for position, message in tagged.errors.items():
                summary.unreadable[paths[block[position]]] = message
            if tagger is not None:
                predictions = tagger.decide(tagged.probabilities, tagged.indices, threshold=threshold)
                for position, predicted in zip(tagged.positions, predictions):
                    for name, probability in predicted:
                        merged[block[position]].add(name, "predicted", float(probability), summary)
            if captioner is not None:
                for position, text in zip(captioned.positions, captioned.captions):
                    written[block[position]] = text
                    for name in parser.tags(text):
                        merged[block[position]].add(name, "captioned", None, summary)
        samples.select([ids[i] for i in block], ordered=True).set_values(
            out_field, [merged[i].to_label(written[i]) for i in block], dynamic=True)
        if progress is not None:
            progress(block.stop / len(ids), f"generated tags for {block.stop:,} of {len(ids):,} samples")
    return summary


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [text for text in value or () if isinstance(text, str) and text.strip()]


def _tag_block(paths: list[str], tagger: Any, captioner: Any, caption_options: dict[str, Any] | None,
               batch_size: int) -> Iterator[tuple[Any, Any]]:
    """Per batch, the tagger's and the captioner's ``TaggedBatch`` (the same one when they are one model, whose
    backbone then runs once per image for both)."""
    if tagger is None and captioner is None:
        return iter(())
    first = tagger if tagger is not None else captioner
    runs = [first.iter_batches(paths, tags=None if tagger is not None else [], caption=captioner is first,
                               caption_options=caption_options, batch_size=batch_size)]
    if captioner is not None and captioner is not first:
        runs.append(captioner.iter_batches(paths, tags=[], caption=True, caption_options=caption_options,
                                           batch_size=batch_size))
    return ((batches[0], batches[-1]) for batches in zip(*runs))
