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

The generation is recorded as a FiftyOne run (``ram_generate_<out_field>``) whose status says whether it
finished. A new field whose generation fails is deleted with its record; an overwrite that stops halfway is
marked, so that the next run says the field is partial instead of merely "exists".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from fiftyone_ram.engine.ray_passes import ModelResult
from fiftyone_ram.errors import UserError
from fiftyone_ram.progress import Progress
from fiftyone_ram.driver.ray_executor import RayOptions, check_engine
from fiftyone_ram.labels.label_system import normalize_name

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


def generate_tags(samples: Any, out_field: str, *, tag_fields: Sequence[str] = (),
                  caption_fields: Sequence[str] = (), tagger: Any = None, captioner: Any = None,
                  parser: Any = None, tag_list: str | None = None, threshold: float | None = None,
                  batch_size: int = 8, caption_options: dict[str, Any] | None = None, overwrite: bool = False,
                  progress: Progress | None = None, engine: str = "local",
                  ray_options: RayOptions | None = None) -> GenerationSummary:
    """Merge the tags of every source into ``out_field`` of ``samples`` (dataset or view).

    ``tag_fields``: fields with existing tags; ``caption_fields``: string or list-of-strings fields;
    ``tagger``: a loaded tagger (``fiftyone_ram.load_tagger``) whose predictions are added; ``captioner``: a
    Tag2Text tagger (may be the same object) whose captions are parsed; ``parser``: the caption parser
    (default: RAM's label system, or ``tag_list``). Raises if ``out_field`` exists and not ``overwrite``.
    ``engine``: ``local`` (the models here) or ``ray`` (the tagger's and captioner's pass on Ray Data with
    ``ray_options``, :mod:`.ray_passes`; the same field, values, unreadable images and run record). Ray
    workers load the models again from their checkpoint files: a tagger built in memory is refused.
    """
    from fiftyone_ram.fields import read_tags

    check_generation(samples, out_field, tag_fields=tag_fields, caption_fields=caption_fields, overwrite=overwrite)
    check_engine(engine)
    dataset = samples._dataset
    run_key = generation_run_key(out_field)
    exists = dataset.get_field(out_field) is not None
    if captioner is not None and not captioner.can_caption:
        raise GenerationError("the captioner must be a Tag2Text model with its captioning branch")
    if not (tag_fields or caption_fields or tagger or captioner):
        raise GenerationError("give at least one source: tag fields, caption fields, a tagger or a captioner")
    if engine == "ray":  # before anything is written: a tagger the workers cannot load is refused here
        from fiftyone_ram.engine.ray_passes import tagger_spec

        for model, what in ((tagger, "tagger"), (captioner, "captioner")):
            if model is not None:
                tagger_spec(model, what)
    if (caption_fields or captioner) and parser is None:
        from fiftyone_ram.labels.caption_parser import load_parser

        parser = load_parser(tag_list)

    summary = GenerationSummary(out_field)
    ids, paths = samples.values("id"), samples.values("filepath")
    try:
        originals = [read_tags(samples, name).names for name in tag_fields]
    except ValueError as exc:
        raise GenerationError(str(exc)) from None
    captions = [samples.values(name) for name in caption_fields]
    summary.samples = len(ids)
    settings = {"method": "ram_generate", "out_field": out_field, "tag_fields": list(tag_fields),
                "caption_fields": list(caption_fields), "tagger": getattr(tagger, "family", None),
                "captioner": getattr(captioner, "family", None), "threshold": threshold, "overwrite": bool(exists)}
    dataset.register_run(run_key, dataset.init_run(**settings), overwrite=True)
    _save_state(dataset, run_key, "running", 0, len(ids))
    written = [0]

    def saved(done: int) -> None:
        written[0] = done
        _save_state(dataset, run_key, "running", done, len(ids))

    try:
        _generate(samples, out_field, ids, paths, originals, captions, parser, tagger, captioner, threshold,
                  caption_options, batch_size, summary, progress, saved,
                  (ray_options or RayOptions()) if engine == "ray" else None)
    except BaseException as exc:
        if not exists:  # a new field: it goes, with its record; nothing partial is left behind
            if dataset.get_field(out_field) is not None:
                dataset.delete_sample_field(out_field)
            dataset.delete_run(run_key)
        else:  # an overwrite stopped halfway: say so to the next run
            _save_state(dataset, run_key, "interrupted", written[0], len(ids), f"{type(exc).__name__}: {exc}"[:300])
        raise
    _save_state(dataset, run_key, "completed", len(ids), len(ids))
    return summary


def check_generation(samples: Any, out_field: str, *, tag_fields: Sequence[str] = (),
                     caption_fields: Sequence[str] = (), overwrite: bool = False) -> None:
    """Refuse a generation that cannot run, before any model is loaded and before anything is written: a bad
    output name, an empty collection, an output field that exists (saying when it is partial, from a run
    that did not finish) without ``overwrite``. :func:`generate_tags` calls it; the CLI calls it first."""
    if not out_field.isidentifier():
        raise GenerationError(f"'{out_field}' is not a valid field name (letters, digits and underscores)")
    if out_field in set(tag_fields) | set(caption_fields):
        raise GenerationError(f"the output field '{out_field}' is also an input")
    dataset = samples._dataset
    if len(samples) == 0:
        raise GenerationError(f"nothing to generate: the {'view' if samples is not dataset else 'dataset'} has "
                              f"no samples")
    if dataset.get_field(out_field) is not None and not overwrite:
        partial = _unfinished(dataset, generation_run_key(out_field))
        if partial is not None:
            raise GenerationError(f"'{out_field}' is partial: {partial}: pass overwrite (CLI: --overwrite) to "
                                  f"generate it again")
        raise GenerationError(f"'{out_field}' already exists: pass overwrite (CLI: --overwrite) to replace it")


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


def generation_run_key(out_field: str) -> str:
    return f"ram_generate_{out_field}"


def _save_state(dataset: Any, run_key: str, status: str, done: int, total: int, error: str | None = None) -> None:
    """The run's results: ``status`` (running / interrupted / completed) and how many samples are written."""
    results = dataset.init_run_results(run_key, status=status, samples_written=done, samples_total=total,
                                       error=error)
    dataset.save_run_results(run_key, results, overwrite=True)


def _unfinished(dataset: Any, run_key: str) -> str | None:
    """How an earlier generation of the field did not finish, or None (finished, or no record of one)."""
    if not dataset.has_run(run_key):
        return None
    results = dataset.load_run_results(run_key, cache=False)
    state = results.serialize() if results is not None else {}
    status = state.get("status")
    if status in (None, "completed"):
        return None
    how = (f"stopped ({state['error']})" if status == "interrupted" and state.get("error")
           else "did not finish (it stopped, or is still running elsewhere)")
    done, total = state.get("samples_written", 0), state.get("samples_total", "?")
    return f"an earlier generate {how} after {done} of {total} samples"


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [text for text in value or () if isinstance(text, str) and text.strip()]
