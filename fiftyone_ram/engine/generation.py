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

The settings are a :class:`GenerateJob`. The generation is recorded in the run store (kind ``generate``,
:mod:`fiftyone_ram.driver.runs`) with its status. A new field whose generation fails is deleted with its
record; an overwrite that stops halfway is recorded as interrupted or failed, so that the next run says the
field is partial instead of merely "exists".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from fiftyone_ram.driver import runs
from fiftyone_ram.driver.ray_executor import ExecutorSettings, RayOptions
from fiftyone_ram.engine.ray_passes import ModelResult
from fiftyone_ram.errors import UserError
from fiftyone_ram.jobs import FIELD, FIELDS, PATH, THRESHOLD, setting
from fiftyone_ram.labels.label_system import normalize_name
from fiftyone_ram.progress import Progress
from fiftyone_ram.tagger_spec import BATCH_SIZE

SOURCES = ("original", "parsed", "predicted", "captioned")


class GenerationError(UserError, ValueError):
    """A generation that cannot be done as asked (a bad field name, no source, a field that exists...)."""


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


@dataclass
class GenerateJob(ExecutorSettings):
    """The settings of a generation (the models are given to :meth:`run`)."""

    what = "generation"

    out_field: str = setting("generated", kind=FIELD, label="Output field",
                             help="the Classifications field to write; each tag has its sources and confidence")
    tag_fields: tuple[str, ...] = setting((), kind=FIELDS, flag="--tag-field", label="Existing tags",
                                          help="fields whose tags are kept as 'original' (Classifications, "
                                               "Classification, Detections, Polylines or a string list such as "
                                               "'tags'; repeatable)")
    caption_fields: tuple[str, ...] = setting((), kind=FIELDS, flag="--caption-field", label="Caption fields",
                                              help="text fields parsed into 'parsed' tags (repeatable)")
    parser_tags: str | None = setting(None, kind=PATH, label="Tag list for parsing",
                                      help="tag list or saved label system file for parsing captions (default: "
                                           "RAM's 4,585 tags)")
    threshold: float | None = setting(None, kind=THRESHOLD, label="One threshold",
                                      help="the tagger's predictions at one threshold for all tags (default: its "
                                           "per-class thresholds)")
    overwrite: bool = setting(False, label="Replace the output field", help="replace the output field if it exists")
    batch_size: int = setting(BATCH_SIZE, low=1, label="Batch size", help="images per model call")

    def check(self, samples: Any, tagger: Any = None, captioner: Any = None) -> None:
        """Refuse a generation that cannot run, before any model is loaded (``tagger`` / ``captioner`` None, or
        the loaded ones) and before anything is written: a bad output name, an empty collection, an output field
        that exists (saying when it is partial) without ``overwrite``, no source at all."""
        self.check_executor()
        out_field = self.out_field
        if not out_field.isidentifier():
            raise GenerationError(f"'{out_field}' is not a valid field name (letters, digits and underscores)")
        if out_field in set(self.tag_fields) | set(self.caption_fields):
            raise GenerationError(f"the output field '{out_field}' is also an input")
        dataset = samples._dataset
        if samples.count("id") == 0:
            raise GenerationError(f"nothing to generate: the {'view' if samples is not dataset else 'dataset'} "
                                  f"has no samples")
        if dataset.get_field(out_field) is not None and not self.overwrite:
            partial = _unfinished(dataset, out_field)
            if partial is not None:
                raise GenerationError(f"'{out_field}' is partial: {partial}: pass overwrite (CLI: --overwrite) to "
                                      f"generate it again")
            raise GenerationError(f"'{out_field}' already exists: pass overwrite (CLI: --overwrite) to replace it")
        _check_sources(samples, self)
        if captioner is not None and not captioner.can_caption:
            raise GenerationError("the captioner must be a Tag2Text model with its captioning branch")
        if self.executor == "ray":  # a model the workers cannot load is refused here
            from fiftyone_ram.engine.ray_passes import tagger_spec

            for model, what in ((tagger, "tagger"), (captioner, "captioner")):
                if model is not None:
                    tagger_spec(model, what)

    def run(self, samples: Any, tagger: Any = None, captioner: Any = None, parser: Any = None,
            caption_options: dict[str, Any] | None = None, progress: Progress | None = None) -> GenerationSummary:
        """Merge the tags of every source into the output field (see :func:`generate_tags`)."""
        from fiftyone_ram.fields import read_tags

        self.check(samples, tagger, captioner)
        if not (self.tag_fields or self.caption_fields or tagger or captioner):
            raise GenerationError("give at least one source: tag fields, caption fields, a tagger or a captioner")
        if (self.caption_fields or captioner) and parser is None:
            from fiftyone_ram.labels.caption_parser import load_parser

            parser = load_parser(self.parser_tags)
        dataset = samples._dataset
        out_field = self.out_field
        exists = dataset.get_field(out_field) is not None
        summary = GenerationSummary(out_field)
        ids, paths = samples.values("id"), samples.values("filepath")
        originals = [read_tags(samples, name).names for name in self.tag_fields]
        captions = [samples.values(name) for name in self.caption_fields]
        summary.samples = len(ids)
        settings = {**self.to_dict(), "tagger": _spec_of(tagger), "captioner": _spec_of(captioner),
                    "replaced": bool(exists)}
        record = runs.RunRecord("generate", out_field, settings, outputs={"fields": [out_field]})
        runs.save(dataset, record)
        runs.save_state(dataset, "generate", out_field, samples_written=0, samples_total=len(ids))
        written = [0]

        def saved(done: int) -> None:
            written[0] = done
            runs.save_state(dataset, "generate", out_field, samples_written=done, samples_total=len(ids))

        try:
            _generate(samples, out_field, ids, paths, originals, captions, parser, tagger, captioner,
                      self.threshold, caption_options, self.batch_size, summary, progress, saved, self.ray_options)
        except BaseException as exc:
            if not exists:  # a new field: it goes, with its record; nothing partial is left behind
                if dataset.get_field(out_field) is not None:
                    dataset.delete_sample_field(out_field)
                runs.delete(dataset, "generate", out_field)
            else:  # an overwrite stopped halfway: say so to the next run
                interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
                runs.save(dataset, record.ended(runs.INTERRUPTED if interrupted else runs.FAILED, exc))
            raise
        runs.save(dataset, record.ended(runs.COMPLETED))
        return summary


def generate_tags(samples: Any, out_field: str = GenerateJob.default("out_field"), *, tagger: Any = None,
                  captioner: Any = None, parser: Any = None, caption_options: dict[str, Any] | None = None,
                  progress: Progress | None = None, job: GenerateJob | None = None,
                  **settings: Any) -> GenerationSummary:
    """Merge the tags of every source into ``out_field`` of ``samples`` (dataset or view).

    ``tagger``: a loaded tagger (``fiftyone_ram.load_tagger``) whose predictions are added; ``captioner``: a
    Tag2Text tagger (may be the same object) whose captions are parsed; ``parser``: the caption parser
    (default: RAM's label system, or ``parser_tags``). ``settings``: :class:`GenerateJob`'s (``tag_fields``,
    ``caption_fields``, ``threshold``, ``overwrite``, ``batch_size``, ``executor`` and the Ray executor's), or
    ``job`` itself. With the Ray executor the tagger's and captioner's pass runs on Ray Data (:mod:`.ray_passes`;
    the same field, values, unreadable images and run record); workers load the models again from their
    checkpoint files, so a tagger built in memory is refused.
    """
    if job is None:
        job = GenerateJob(out_field=out_field, **settings)
    elif settings:
        raise TypeError("give the generation job or its settings, not both")
    return job.run(samples, tagger, captioner, parser, caption_options, progress)


def _spec_of(tagger: Any) -> dict[str, Any] | None:
    """What a run record says of a model: how to load it again (its spec), else its family."""
    if tagger is None:
        return None
    spec = getattr(tagger, "spec", None)
    if spec is not None and spec.portable:
        return spec.to_dict()
    return {"family": getattr(tagger, "family", None)}


def _check_sources(samples: Any, job: GenerateJob) -> None:
    """The tag and caption fields exist and hold what they must."""
    from fiftyone_ram.fields import field_kind, TAG_LABEL_TYPES
    import fiftyone.core.fields as fof

    for name in job.tag_fields:
        try:
            field_kind(samples, name, TAG_LABEL_TYPES, "tag", allow_strings=True)
        except ValueError as exc:
            raise GenerationError(str(exc)) from None
    for name in job.caption_fields:
        found = samples.get_field(name)
        text = isinstance(found, fof.StringField) or (isinstance(found, fof.ListField)
                                                      and isinstance(found.field, fof.StringField))
        if not text:
            kind = "no field" if found is None else type(found).__name__
            raise GenerationError(f"caption field '{name}' holds {kind}; expected a string or a list of strings")


def _generate(samples: Any, out_field: str, ids: list[str], paths: list[str], originals: list, captions: list,
              parser: Any, tagger: Any, captioner: Any, threshold: float | None, caption_options: Any,
              batch_size: int, summary: GenerationSummary, progress: Progress | None, saved: Any,
              ray_options: RayOptions | None = None) -> None:
    """Merge and write chunk by chunk, in collection order; ``saved(done)`` after each chunk (the samples
    written so far). The model results may arrive in any order (Ray): a chunk waits for all of its own."""
    if tagger is None and captioner is None:
        stream: Iterator[tuple[int, ModelResult]] = (item for item in ())
    elif ray_options is None:
        stream = _local_results(paths, tagger, captioner, threshold, caption_options, batch_size)
    else:
        from fiftyone_ram.engine.ray_passes import generation_results_on_ray

        stream = generation_results_on_ray(paths, tagger, captioner, threshold=threshold,
                                           caption_options=caption_options, batch_size=batch_size,
                                           options=ray_options)
    with closing(stream):
        arrived: dict[int, ModelResult] = {}
        for start in range(0, len(ids), CHUNK):
            block = range(start, min(start + CHUNK, len(ids)))
            if tagger is not None or captioner is not None:
                _wait_for(block, stream, arrived)
            labels = [_merge(i, originals, captions, parser, arrived.pop(i, None), paths[i], tagger, captioner,
                             summary) for i in block]
            samples.select([ids[i] for i in block], ordered=True).set_values(out_field, labels, dynamic=True)
            saved(block.stop)
            if progress is not None:
                progress(block.stop / len(ids), f"generated tags for {block.stop:,} of {len(ids):,} samples")


def _wait_for(block: range, stream: Iterator[tuple[int, ModelResult]], arrived: dict[int, ModelResult]) -> None:
    """Read ``stream`` into ``arrived`` until every sample of ``block`` is there."""
    missing = {i for i in block if i not in arrived}
    if not missing:  # Ray sent them ahead of their chunk
        return
    for position, result in stream:
        arrived[position] = result
        missing.discard(position)
        if not missing:
            return
    if missing:
        raise RuntimeError(f"the model pass ended without results for {len(missing)} sample(s)")


def _merge(i: int, originals: list, captions: list, parser: Any, result: ModelResult | None, path: str,
           tagger: Any, captioner: Any, summary: GenerationSummary):
    """Sample ``i``'s label: its tags from every source, in the order of :data:`SOURCES`."""
    merged = _Merged()
    for names in originals:
        for name in names[i]:
            merged.add(name, "original", None, summary)
    for column in captions:
        texts = _texts(column[i])
        for name in parser.tags(texts) if texts else ():
            merged.add(name, "parsed", None, summary)
    if result is None:
        return merged.to_label(None)
    if result.error is not None:
        summary.unreadable[path] = result.error
    if tagger is not None:
        for name, probability in result.predicted:
            merged.add(name, "predicted", probability, summary)
    if captioner is not None and result.caption is not None:
        for name in parser.tags(result.caption):
            merged.add(name, "captioned", None, summary)
    return merged.to_label(result.caption)


def _local_results(paths: list[str], tagger: Any, captioner: Any, threshold: float | None, caption_options: Any,
                   batch_size: int) -> Iterator[tuple[int, ModelResult]]:
    """``(position, ModelResult)`` of every path, in order, a chunk at a time (the batches stay in a chunk)."""
    from fiftyone_ram.engine.ray_passes import results_of, tag_batches

    for start in range(0, len(paths), CHUNK):
        block = paths[start:start + CHUNK]
        for tagged, captioned in tag_batches(block, tagger, captioner, caption_options, batch_size):
            results = results_of(tagged, captioned, tagger, captioner, threshold)
            yield from ((start + position, results[position]) for position in sorted(results))


def _unfinished(dataset: Any, out_field: str) -> str | None:
    """How an earlier generation of the field did not finish, or None (finished, or no record of one)."""
    record = runs.load(dataset, "generate", out_field)
    if record is None or record.finished:
        return None
    state = runs.load_state(dataset, "generate", out_field)
    how = (f"stopped ({record.error})" if record.error
           else "did not finish (it stopped, or is still running elsewhere)")
    done, total = state.get("samples_written", 0), state.get("samples_total", "?")
    return f"an earlier generate {how} after {done} of {total} samples"


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [text for text in value or () if isinstance(text, str) and text.strip()]
