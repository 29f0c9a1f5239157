"""Tag cleaning over a FiftyOne collection: the RAM data engine's second step, as a dataset audit.

For each category (all, a list, or the N most frequent) and each sample tagged with it: find the category's
regions (detector or ``Detections`` field), crop them in memory, embed the crops, then judge the tag:

* ``no_region``: no region above the detector threshold (score: 0, nothing was found);
* ``outlier``: every region of the tag is an outlier of its category's crops (:func:`score_outliers`;
  score: the smallest outlier score of its regions, about 1 for typical crops);
* ``not_predicted``: the tagger does not predict the category on any of its region crops (score: the highest
  probability it gave, at most the category's threshold).

What is written (the tag field itself is never modified here):

* ``<review_field>``: a copy of every tag as a ``Classification``; checked tags get ``checked=True`` and the
  evidence (``regions``, ``region_score``, ``outlier_score``, ``crop_probability``); flagged tags also get
  ``flag_reason`` (the first of the reasons above that applies), ``flag_reasons`` and ``flag_score``;
* ``<cleaned_field>``: the tags without the flagged ones;
* a saved view of the samples with flagged tags (only those labels shown) for review in the App;
* a run in the run store (kind ``clean``, :mod:`fiftyone_ram.driver.runs`) with the settings, the completed
  categories and the status (``running``, ``interrupted`` or ``failed`` with what stopped it, ``completed``), so
  that an interrupted run resumes category by category (``resume=True``) and a later run is told truthfully what
  is there. A run that fails before its first batch of categories is complete is removed with what it wrote:
  nothing is left that a next run would mistake for a cleaning.

The settings are a :class:`CleanJob`, which also builds the region source and the crop encoder they name.

Scale: categories are processed ``categories_per_batch`` at a time; within a batch, (image, category) pairs
go through the detector and the encoder ``batch_size`` at a time, so memory is one batch of images plus the
embeddings of one batch of categories. Outliers are found among the regions of one category batch: the
cross-category check sees the categories of that batch. On Ray, one pipeline carries the pairs of every batch
(the actors load their models once per run); a batch's results are judged once all of them are back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fiftyone_ram.driver import runs
from fiftyone_ram.driver.ray_executor import ExecutorSettings
from fiftyone_ram.engine.crops import DEFAULT_CLIP, CropEncoder
from fiftyone_ram.engine.outliers import OUTLIER_RULES, OutlierOptions, score_outliers
from fiftyone_ram.engine.ray_passes import (
    ChunkResult,
    CropItem,
    check_cleaning_on_ray,
    cleaning_results_on_ray,
    crop_pass,
)
from fiftyone_ram.engine.regions import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_DETECTOR,
    DEFAULT_MAX_REGIONS,
    DEFAULT_TEXT_THRESHOLD,
    Region,
    RegionSource,
)
from fiftyone_ram.engine.review import (
    CleaningError,
    default_fields,
    save_review_view,
    strip_flags,
    to_classifications,
)
from fiftyone_ram.jobs import FIELD, THRESHOLD, setting
from fiftyone_ram.progress import Progress
from fiftyone_ram.tagger_spec import BATCH_SIZE

#: Why cleaning flags a tag, first reason first (the review field's ``flag_reason``).
FLAG_REASONS = ("no_region", "outlier", "not_predicted")
#: Where the crops' embeddings come from.
EMBEDDERS = ("ram", "clip")


@dataclass
class CleaningSummary:
    """What a cleaning run did (all runs of a resumed cleaning together)."""

    tag_field: str
    cleaned_field: str
    review_field: str
    view_name: str
    run_key: str
    categories_done: list[str] = field(default_factory=list)
    categories_skipped: dict[str, str] = field(default_factory=dict)
    tags_checked: int = 0
    regions: int = 0
    flagged: dict[str, int] = field(default_factory=dict)  # by primary reason
    unreadable: dict[str, str] = field(default_factory=dict)  # filepath -> reason

    @property
    def flagged_total(self) -> int:
        return sum(self.flagged.values())

    def __str__(self) -> str:
        lines = [f"{len(self.categories_done)} categories cleaned in '{self.tag_field}': {self.tags_checked} tags "
                 f"checked over {self.regions} regions, {self.flagged_total} flagged"]
        lines += [f"  {reason}: {self.flagged.get(reason, 0)}" for reason in FLAG_REASONS]
        lines.append(f"review: field '{self.review_field}', saved view '{self.view_name}'; "
                     f"cleaned tags: '{self.cleaned_field}'")
        if self.categories_skipped:
            lines.append(f"{len(self.categories_skipped)} categories skipped: " + ", ".join(
                f"{name} ({why})" for name, why in list(self.categories_skipped.items())[:10]))
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} images could not be read (their tags were not judged)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flagged_total"] = self.flagged_total
        return out


@dataclass(frozen=True)
class _Pair:
    """One tag of one sample: its position in the collection and its category."""

    index: int
    category: str


@dataclass(kw_only=True)
class CleanJob(ExecutorSettings):
    """The settings of a cleaning (the tagger, when one is needed, is given to :meth:`run`)."""

    what = "cleaning"

    tag_field: str = setting(kind=FIELD, label="Tags to clean",
                             help="the tags to clean (never modified until the review is applied)")
    categories: tuple[str, ...] = setting((), label="These tags", help="only these tags (default: all)")
    top: int | None = setting(None, low=1, label="The most frequent", help="only the N most frequent tags")
    regions_field: str | None = setting(None, kind=FIELD, label="Boxes",
                                        help="take regions from this Detections field instead of a detector")
    detector: str = setting(DEFAULT_DETECTOR, label="Detector",
                            help="the Grounding-DINO detector (hub id or folder), prompted with each tag")
    box_threshold: float = setting(DEFAULT_BOX_THRESHOLD, kind=THRESHOLD, label="Box threshold",
                                   help="the detector's box score a region needs")
    text_threshold: float = setting(DEFAULT_TEXT_THRESHOLD, kind=THRESHOLD, label="Text threshold",
                                    help="the detector's phrase score a region needs")
    max_regions: int = setting(DEFAULT_MAX_REGIONS, low=1, label="Regions per tag",
                               help="the best regions of a tag that are judged")
    embedder: str = setting("ram", choices=EMBEDDERS, label="Crop embeddings",
                            help="ram: the tagger's image encoder; clip: a CLIP image encoder")
    clip_model: str = setting(DEFAULT_CLIP, label="CLIP model", help="with the CLIP embedder: hub id or folder")
    region_check: bool = setting(True, flag="--check", label="Also flag tags the tagger does not predict on their regions",
                          help="also flag a tag the tagger does not predict on any of its regions (with the CLIP "
                               "embedder and no check, no tagger is needed)")
    fraction: float = setting(0.1, low=0.0, high=1.0, label="Expected share of wrong tags",
                              help="the expected share of wrong tags")
    rule: str = setting("adaptive", choices=OUTLIER_RULES, label="Outlier rule",
                        help="adaptive: flag what stands out (up to twice the fraction); quota: the top fraction "
                             "of each tag")
    per_category: bool = setting(False, label="Judge each tag alone",
                                 help="judge each tag's crops alone, without comparing with other tags' modes (for "
                                      "overlapping tags such as 'animal' and 'dog')")
    seed: int = setting(0, help="the seed of the clustering")
    categories_per_batch: int = setting(32, low=1, label="Tags per batch",
                                        help="tags judged together (outliers are found among one batch's crops)")
    batch_size: int = setting(BATCH_SIZE, low=1, label="Batch size",
                              help="(image, tag) pairs per model call (each pair's regions are one crop each)")
    resume: bool = setting(False, form=False, help="continue an interrupted cleaning of the tag field")
    overwrite: bool = setting(False, form=False, help="start the cleaning of the tag field again")
    crop_margin: float = setting(0.0, low=0.0, flag=False, form=False,
                                 help="grow each region by this fraction of its size before cropping")
    cleaned_field: str | None = setting(None, kind=FIELD, flag=False, form=False,
                                        help="where the tags without the flagged ones go (default <tag_field>_cleaned)")
    review_field: str | None = setting(None, kind=FIELD, flag=False, form=False,
                                       help="where the review copy goes (default <tag_field>_review)")
    view_name: str | None = setting(None, flag=False, form=False,
                                    help="the saved view of the flagged tags (default <tag_field>_flagged)")
    device: str | None = setting(None, flag=False, form=False, help="where the detector and CLIP run")

    def check_values(self) -> None:
        super().check_values()
        if self.resume and self.overwrite:
            raise CleaningError("give resume (--resume) or overwrite (--overwrite), not both")
        if self.categories and self.top:
            raise CleaningError("give categories (--categories) or top (--top), not both")
        try:
            score_outliers(np.zeros((0, 1)), [], self.fraction, **self.outlier_options)  # bad options fail now
        except (ValueError, TypeError) as exc:
            raise CleaningError(f"invalid cleaning options: {exc}") from None

    @property
    def outlier_options(self) -> dict[str, Any]:
        return {"rule": self.rule, "seed": self.seed, "cross_category": not self.per_category}

    @property
    def needs_tagger(self) -> bool:
        return self.embedder == "ram" or self.region_check

    def chosen_categories(self) -> Sequence[str] | int | None:
        return list(self.categories) if self.categories else self.top

    def check(self, samples: Any, regions: Any = None, encoder: Any = None) -> CheckedCleaning:
        """Refuse a cleaning that cannot run, before any model is loaded and before anything is written."""
        self.check_executor()
        if self.regions_field is not None:
            _check_boxes(samples, self.regions_field)
        checked = check_cleaning(samples, self.tag_field, cleaned_field=self.cleaned_field,
                                 review_field=self.review_field, view_name=self.view_name, resume=self.resume,
                                 overwrite=self.overwrite)
        if self.executor == "ray" and regions is not None and encoder is not None:
            check_cleaning_on_ray(regions, encoder)
        return checked

    def regions(self, samples: Any) -> RegionSource:
        """The region source the settings name: the boxes field, else Grounding-DINO."""
        from fiftyone_ram.engine.regions import make_regions

        return make_regions(samples, field=self.regions_field, detector=self.detector,
                            box_threshold=self.box_threshold, text_threshold=self.text_threshold,
                            max_regions=self.max_regions, device=self.device)

    def encoder(self, tagger: Any = None) -> CropEncoder:
        """The crop encoder the settings name (with ``tagger`` for the RAM embedder or the check)."""
        from fiftyone_ram.engine.crops import make_encoder

        if self.needs_tagger and tagger is None:
            raise CleaningError("this cleaning needs a tagger (the RAM embedder or the tagger's check): give one, "
                                "or use the CLIP embedder without the check")
        return make_encoder(self.embedder, tagger=tagger, clip_model=self.clip_model, device=self.device,
                            check=self.region_check)

    def run(self, samples: Any, tagger: Any = None, *, regions: RegionSource | None = None,
            encoder: CropEncoder | None = None, progress: Progress | None = None) -> CleaningSummary:
        """Clean the tags (see :func:`clean_tags`); ``regions`` / ``encoder`` replace the ones the settings name."""
        self.check(samples)
        regions = regions if regions is not None else self.regions(samples)
        encoder = encoder if encoder is not None else self.encoder(tagger)
        return _clean(samples, self, regions, encoder, progress)


def clean_tags(samples: Any, tag_field: str, *, tagger: Any = None, regions: RegionSource | None = None,
               encoder: CropEncoder | None = None, progress: Progress | None = None, job: CleanJob | None = None,
               **settings: Any) -> CleaningSummary:
    """Clean the tags of ``tag_field`` (any field the evaluation reads: ``Classifications``,
    ``Classification``, ``Detections``, ``Polylines``, a list of strings) in ``samples`` (dataset or view).

    ``settings``: :class:`CleanJob`'s (``categories`` or ``top``, the region source, the embedder, the outlier
    rule, ``resume`` / ``overwrite``, ``executor``...), or ``job`` itself. ``tagger``: the tagger whose encoder
    embeds the crops (the RAM embedder) and that checks each region. ``regions`` (a
    :class:`~fiftyone_ram.engine.regions.GroundingDinoRegions` or
    :class:`~fiftyone_ram.engine.regions.DetectionsRegions`) and ``encoder`` (a
    :class:`~fiftyone_ram.engine.crops.TaggerCrops`, :class:`~fiftyone_ram.engine.crops.ClipCrops` or
    :class:`~fiftyone_ram.engine.crops.EncoderWithTagger`) replace the ones the settings name.

    ``resume``: continue an earlier run with the same settings, skipping its completed categories;
    ``overwrite``: delete the earlier run and its fields and start again. Without either, an earlier run is
    an error that says whether it finished or stopped. Everything that can be refused is refused before
    anything is written; a run that fails before completing a batch of categories leaves nothing behind,
    one that fails later keeps its completed categories for ``resume``. With the Ray executor the detector and
    crop-embedding pass of each category batch runs on Ray Data (the models in actors, loaded there from their
    files: models built in memory are refused); the outliers are judged here, over the same crops in the same
    order, so both executors write the same verdicts.
    """
    if job is None:
        if isinstance(settings.get("categories"), int):  # N: the N most frequent (the job's top)
            settings["top"] = settings.pop("categories")
        elif settings.get("categories") is not None:
            settings["categories"] = tuple(settings["categories"])
        else:
            settings.pop("categories", None)
        job = CleanJob(tag_field=tag_field, **settings)
    elif settings:
        raise TypeError("give the cleaning job or its settings, not both")
    return job.run(samples, tagger, regions=regions, encoder=encoder, progress=progress)


def _clean(samples: Any, job: CleanJob, regions: RegionSource, encoder: CropEncoder,
           progress: Progress | None) -> CleaningSummary:
    if job.executor == "ray":
        check_cleaning_on_ray(regions, encoder)
    checked = job.check(samples)
    tag_field = job.tag_field
    cleaned_field, review_field, view_name = checked.cleaned_field, checked.review_field, checked.view_name
    tags, names, previous = checked.tags, checked.names, checked.previous
    dataset = samples._dataset
    summary = CleaningSummary(tag_field, cleaned_field, review_field, view_name, runs.run_key("clean", tag_field))
    settings = {"tag_field": tag_field, "cleaned_field": cleaned_field, "review_field": review_field,
                "view_name": view_name, "fraction": job.fraction, "outlier_options": job.outlier_options,
                "regions": getattr(regions, "name", "?"), "max_regions": getattr(regions, "max_regions", None),
                "box_threshold": getattr(regions, "box_threshold", None),
                "text_threshold": getattr(regions, "text_threshold", None), "encoder": getattr(encoder, "name", "?"),
                "crop_margin": job.crop_margin}
    ids, paths = samples.values("id"), samples.values("filepath")
    if previous is not None and job.resume:
        previous.check_settings(tag_field, settings)
        _restore(previous.state, summary)
    done = set(summary.categories_done)
    todo = [c for c in _select_categories(names, job.chosen_categories(), regions, summary) if c not in done]
    if not todo and not done:
        why = "; ".join(f"{name}: {reason}" for name, reason in list(summary.categories_skipped.items())[:5])
        raise CleaningError(f"nothing to clean in '{tag_field}': no category to judge ({why})")

    # From here on the dataset is written to.
    fresh = not done
    completed_now = 0
    record = previous.record if previous is not None and not fresh else runs.RunRecord(
        "clean", tag_field, settings, outputs={"fields": [review_field, cleaned_field], "view": view_name})
    try:
        if fresh:
            if previous is not None:  # overwrite: the earlier cleaning goes with everything it wrote
                _delete_run(dataset, previous)
            runs.save(dataset, record)
            summary.categories_done = []
            _save_state(dataset, summary, planned=todo)
            reviewed = [to_classifications(labels) for labels in
                        _labels_of(samples, tag_field, tags.label_type, names)]
            samples.set_values(review_field, reviewed, dynamic=True)
        else:
            runs.save(dataset, record.ended(runs.RUNNING))
            _save_state(dataset, summary, planned=sorted(done) + todo)
        batches = [todo[i:i + job.categories_per_batch] for i in range(0, len(todo), job.categories_per_batch)]
        total = len(done) + len(todo)
        with closing(_ray_results(batches, ids, paths, names, regions, encoder, job)) as on_ray:
            for number, batch in enumerate(batches):
                pairs = _pairs(names, batch)
                if job.ray_options is None:
                    chunks = _chunks(pairs, ids, paths, job.batch_size)
                    results: Any = (_local_chunk(n, chunk, regions, encoder, job.crop_margin)
                                    for n, chunk in enumerate(chunks))
                else:
                    results = next(on_ray)
                _clean_batch(samples, ids, paths, pairs, results, encoder, job.fraction, job.outlier_options,
                             review_field, summary)
                summary.categories_done.extend(batch)
                completed_now += 1
                _save_state(dataset, summary, planned=sorted(done) + todo)
                if progress is not None:
                    progress((number + 1) / (len(batches) + 1), f"cleaned {len(summary.categories_done)} of "
                                                                  f"{total} categories")
        samples.set_values(cleaned_field, [strip_flags(labels, drop_flagged=True)
                                           for labels in samples.values(review_field)])
        save_review_view(samples, review_field, view_name)
        runs.save(dataset, record.ended(runs.COMPLETED))
    except BaseException as exc:
        if fresh and not completed_now:
            _delete_run(dataset, _previous_run(dataset, tag_field))  # nothing worth resuming: leave no trace
        else:
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
            runs.save(dataset, record.ended(runs.INTERRUPTED if interrupted else runs.FAILED, exc))
        raise
    if progress is not None:
        progress(1.0, f"cleaned {len(summary.categories_done)} categories, {summary.flagged_total} tags flagged")
    return summary


def _check_boxes(samples: Any, field: str) -> None:
    import fiftyone.core.labels as fol

    from fiftyone_ram.fields import field_kind

    try:
        field_kind(samples, field, (fol.Detections,), "regions", allow_strings=False)
    except ValueError as exc:
        raise CleaningError(str(exc)) from None


@dataclass
class CheckedCleaning:
    """What :func:`check_cleaning` found: the output names, the tags, and the earlier run if any."""

    cleaned_field: str
    review_field: str
    view_name: str
    tags: Any
    names: list[list[str]]
    previous: _PreviousRun | None


def check_cleaning(samples: Any, tag_field: str, *, cleaned_field: str | None = None,
                   review_field: str | None = None, view_name: str | None = None, resume: bool = False,
                   overwrite: bool = False) -> CheckedCleaning:
    """Refuse a cleaning that cannot run, before any model is loaded and before anything is written: bad or
    taken output names, an empty collection, a field without tags, an earlier run without ``resume`` or
    ``overwrite``."""
    from fiftyone_ram.fields import read_tags

    defaults = default_fields(tag_field)
    cleaned_field = cleaned_field or defaults["cleaned_field"]
    review_field = review_field or defaults["review_field"]
    view_name = view_name or defaults["view_name"]
    _check_fields(samples, tag_field, cleaned_field, review_field)
    dataset = samples._dataset
    where = "view" if samples is not dataset else "dataset"
    if samples.count("id") == 0:
        raise CleaningError(f"nothing to clean: the {where} has no samples")
    try:
        tags = read_tags(samples, tag_field)
    except ValueError as exc:
        raise CleaningError(str(exc)) from None
    names = [list(dict.fromkeys(n for n in row if n)) for row in tags.names]
    if not any(names):
        raise CleaningError(f"nothing to clean: no sample of the {where} ({len(names)} samples) has a tag in "
                            f"'{tag_field}'")
    previous = _previous_run(dataset, tag_field)
    if previous is not None and not (resume or overwrite):
        raise CleaningError(previous.refusal(tag_field))
    _check_outputs(dataset, previous, cleaned_field, review_field, view_name)
    return CheckedCleaning(cleaned_field, review_field, view_name, tags, names, previous)


# -- steps ----------------------------------------------------------------------------------------------


def _check_fields(samples: Any, tag_field: str, cleaned_field: str, review_field: str) -> None:
    outputs = {cleaned_field, review_field}
    if tag_field in outputs or len(outputs) < 2:
        raise CleaningError(f"the tag field '{tag_field}', the cleaned field '{cleaned_field}' and the review field "
                         f"'{review_field}' must be three different fields: the tags themselves are never "
                         f"rewritten by cleaning")
    for name in outputs:
        if not name.isidentifier():
            raise CleaningError(f"'{name}' is not a valid field name (letters, digits and underscores)")


def _labels_of(samples: Any, tag_field: str, label_type: type | None, names: list[list[str]]) -> list[list[Any]]:
    """Per sample, one review label per tag: the original ``Classification`` (copied, attributes kept) when the
    field holds ``Classifications``, new ones named after the tags otherwise; each keeps the ids of the labels it
    stands for (``source_ids``), so that applying the review touches the labels it reviewed and no others."""
    import fiftyone as fo

    if label_type is fo.Classifications:
        out = []
        for value in samples.values(f"{tag_field}.classifications"):
            seen, labels = {}, []
            for label in value or ():
                if not label.label:
                    continue
                if label.label in seen:
                    seen[label.label]["source_ids"].append(label.id)
                    continue
                copy = label.copy()
                copy["source_ids"] = [label.id]
                seen[label.label] = copy
                labels.append(copy)
            out.append(labels)
        return out
    if label_type is None:  # a list of strings: no label ids
        return [[fo.Classification(label=name) for name in row] for row in names]
    out = []
    for value in samples.values(tag_field):
        ids: dict[str, list[str]] = {}
        for label in _labels_in(value, label_type):
            if label.label:
                ids.setdefault(label.label, []).append(label.id)
        out.append([fo.Classification(label=name, source_ids=found) for name, found in ids.items()])
    return out


def _labels_in(value: Any, label_type: type) -> list[Any]:
    if value is None:
        return []
    list_field = getattr(label_type, "_LABEL_LIST_FIELD", None)
    return list(value[list_field] or ()) if list_field else [value]


def _select_categories(names: list[list[str]], categories: Sequence[str] | int | None, regions: RegionSource,
                       summary: CleaningSummary) -> list[str]:
    counts = Counter(name for row in names for name in row)
    ordered = [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    if categories is None:
        chosen = ordered
    elif isinstance(categories, int):
        chosen = ordered[:categories]
    else:
        chosen = []
        for name in dict.fromkeys(categories):
            if name in counts:
                chosen.append(name)
            else:
                summary.categories_skipped[name] = "no sample has this tag"
    boxed = getattr(regions, "categories", None)
    if boxed is not None:
        available = boxed()
        for name in [c for c in chosen if c not in available]:
            summary.categories_skipped[name] = "the region field has no boxes of it"
        chosen = [c for c in chosen if c in available]
    return chosen


def _pairs(names: list[list[str]], batch: list[str]) -> list[_Pair]:
    """The (sample, tag) pairs of one category batch, in collection order."""
    wanted = set(batch)
    return [_Pair(i, c) for i, row in enumerate(names) for c in row if c in wanted]


def _chunks(pairs: list[_Pair], ids: list[str], paths: list[str], batch_size: int) -> list[list[CropItem]]:
    """A category batch's pairs, ``batch_size`` per model call; an item's position is its pair's."""
    return [[CropItem(position, pair.index, ids[pair.index], pair.category, paths[pair.index])
             for position, pair in enumerate(pairs[start:start + batch_size], start)]
            for start in range(0, len(pairs), batch_size)]


def _ray_results(batches: list[list[str]], ids: list[str], paths: list[str], names: list[list[str]],
                 regions: RegionSource, encoder: CropEncoder, job: CleanJob) -> Iterator[list[ChunkResult]]:
    """With the Ray executor: each category batch's chunk results, in batch order, from one Ray pipeline for
    the whole run (its actors load the models once, not once per batch); else nothing."""
    if job.ray_options is None:
        return
    counts = Counter(c for row in names for c in row)
    chunk_counts = [-(-sum(counts[c] for c in batch) // job.batch_size) for batch in batches]
    chunks = (_chunks(_pairs(names, batch), ids, paths, job.batch_size) for batch in batches)
    yield from cleaning_results_on_ray(chunks, chunk_counts, regions, encoder, job.crop_margin, job.ray_options)


def _clean_batch(samples: Any, ids: list[str], paths: list[str], pairs: list[_Pair], results: Iterable[ChunkResult],
                 encoder: CropEncoder, fraction: float, options: dict[str, Any], review_field: str,
                 summary: CleaningSummary) -> None:
    """Judge one category batch's tags (``pairs``) from their chunks' ``results`` in chunk order, and write
    the verdicts."""
    found: dict[_Pair, list[Region]] = {}
    owners: list[_Pair] = []  # per region row
    embeddings, probabilities = [], []
    for result in results:  # in chunk order, whichever engine cut the crops
        for index, message in result.unreadable:
            summary.unreadable[paths[index]] = message
        for position, boxes in result.found:
            found[pairs[position]] = boxes
        if result.vectors is not None:
            embeddings.append(result.vectors)
            probabilities.append(result.probabilities)
            owners.extend(pairs[position] for position in result.owners)
    if embeddings:
        vectors = np.concatenate(embeddings)
        report = score_outliers(vectors, [p.category for p in owners], fraction, **options)
        outlier, score, prob = report.flags, report.scores, np.concatenate(probabilities)
    else:
        outlier, score, prob = np.zeros(0, bool), np.zeros(0), np.zeros(0)
    rows_of: dict[_Pair, list[int]] = {}
    for row, pair in enumerate(owners):
        rows_of.setdefault(pair, []).append(row)
    threshold_of = getattr(encoder, "threshold", lambda category: None)
    verdicts: dict[int, dict[str, dict[str, Any]]] = {}
    for pair, boxes in found.items():
        rows = rows_of.get(pair, [])
        verdict = _judge(boxes, outlier[rows], score[rows], prob[rows], threshold_of(pair.category))
        verdicts.setdefault(pair.index, {})[pair.category] = verdict
        summary.tags_checked += 1
        summary.regions += len(rows)
        if "flag_reason" in verdict:
            summary.flagged[verdict["flag_reason"]] = summary.flagged.get(verdict["flag_reason"], 0) + 1
    _write_verdicts(samples, ids, verdicts, review_field)


def _local_chunk(number: int, chunk: list[CropItem], regions: RegionSource, encoder: CropEncoder,
                 crop_margin: float) -> ChunkResult:
    """:func:`crop_pass` of one chunk here: its images read once each, dropped once the crops are embedded."""
    from fiftyone_ram.images import ImageError, load_image

    images, errors = {}, {}
    for item in chunk:
        if item.index in images or item.index in errors:
            continue
        try:
            images[item.index] = load_image(item.path)
        except ImageError as exc:
            errors[item.index] = str(exc)
    return crop_pass(number, chunk, images, errors, regions, encoder, crop_margin)


def _judge(boxes: list[Region], outlier: np.ndarray, score: np.ndarray, prob: np.ndarray,
           threshold: float | None) -> dict[str, Any]:
    """The review attributes of one tag from its regions' evidence."""
    verdict: dict[str, Any] = {"checked": True, "regions": len(boxes)}
    reasons: list[tuple[str, float]] = []
    if not boxes:
        reasons.append(("no_region", 0.0))
    else:
        verdict["region_score"] = round(max(r.score for r in boxes), 6)
        verdict["outlier_score"] = round(float(score.min()), 6)
        if outlier.all():
            reasons.append(("outlier", float(score.min())))
        known = prob[~np.isnan(prob)]
        if len(known):
            verdict["crop_probability"] = round(float(known.max()), 6)
            if threshold is not None and known.max() <= threshold:
                reasons.append(("not_predicted", float(known.max())))
    if reasons:
        verdict["flag_reason"], verdict["flag_score"] = reasons[0][0], round(reasons[0][1], 6)
        verdict["flag_reasons"] = [reason for reason, _ in reasons]
    return verdict


def _write_verdicts(samples: Any, ids: list[str], verdicts: dict[int, dict[str, dict[str, Any]]],
                    review_field: str) -> None:
    if not verdicts:
        return
    touched = [ids[i] for i in verdicts]
    current = dict(zip(*samples.select(touched).values(["id", review_field])))
    updates = {}
    for index, by_category in verdicts.items():
        labels = current.get(ids[index])
        if labels is None:
            continue
        for label in labels.classifications:
            verdict = by_category.get(label.label)
            if verdict is None:
                continue
            for key, value in verdict.items():
                label[key] = value
        updates[ids[index]] = labels
    samples.set_values(review_field, updates, key_field="id", dynamic=True)


def _save_state(dataset: Any, summary: CleaningSummary, *, planned: list[str] | None = None) -> None:
    """The run's bookkeeping: the summary so far and the categories planned."""
    state = summary.to_dict()
    state.pop("run_key")
    state["planned"] = planned if planned is not None else list(summary.categories_done)
    runs.save_state(dataset, "clean", summary.tag_field, **state)


def _restore(state: dict[str, Any], summary: CleaningSummary) -> None:
    summary.categories_done = list(state.get("categories_done", []))
    summary.categories_skipped = dict(state.get("categories_skipped", {}))
    summary.tags_checked = int(state.get("tags_checked", 0))
    summary.regions = int(state.get("regions", 0))
    summary.flagged = dict(state.get("flagged", {}))
    summary.unreadable = dict(state.get("unreadable", {}))


# -- the earlier run ---------------------------------------------------------------------------------------

#: Settings a resumed run must share with the run it continues (the judgement would differ otherwise).
RESUME_SETTINGS = ("cleaned_field", "review_field", "view_name", "fraction", "outlier_options", "regions",
                   "max_regions", "box_threshold", "text_threshold", "encoder", "crop_margin")


@dataclass
class _PreviousRun:
    """The cleaning run already recorded for a tag field: its record and its state."""

    record: runs.RunRecord
    state: dict[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        return self.record.settings

    def refusal(self, tag_field: str) -> str:
        done = list(self.state.get("categories_done", []))
        when = f", started {self.record.started_at}"
        key = self.record.key
        if self.record.finished:
            return (f"'{tag_field}' was already cleaned ({len(done)} categories, run '{key}'{when}): pass "
                    f"resume (CLI: --resume) to clean the categories not done yet, or overwrite (--overwrite) to "
                    f"start again")
        planned = len(self.state.get("planned") or done)
        how = (f"stopped ({self.record.error})" if self.record.error
               else "did not finish (it stopped, or is still running elsewhere)")
        return (f"an earlier cleaning of '{tag_field}' {how} after {len(done)} of {planned} categories (run "
                f"'{key}'{when}): pass resume (CLI: --resume) to continue it, or overwrite (--overwrite) to "
                f"start again")

    def check_settings(self, tag_field: str, settings: dict[str, Any]) -> None:
        differ = []
        for name in RESUME_SETTINGS:
            if name not in self.settings:
                continue
            old, new = self.settings[name], settings[name]
            if name == "outlier_options":
                old, new = _normalized_options(old), _normalized_options(new)
                changed = {k: (old[k], new[k]) for k in new if old.get(k) != new[k]}
                differ += [f"{k} was {a!r}, now {b!r}" for k, (a, b) in changed.items()]
            elif old != new:
                differ.append(f"{name} was {old!r}, now {new!r}")
        if differ:
            raise CleaningError(f"cannot resume the cleaning of '{tag_field}' with other settings ("
                                f"{'; '.join(differ)}): use the same settings, or overwrite (--overwrite) to "
                                f"start again")

    def outputs(self) -> tuple[list[str], str | None]:
        """The fields and the saved view this run writes."""
        fields = [self.settings.get(k) for k in ("review_field", "cleaned_field")]
        return [f for f in fields if f], self.settings.get("view_name")


def _previous_run(dataset: Any, tag_field: str) -> _PreviousRun | None:
    record = runs.load(dataset, "clean", tag_field)
    if record is None:
        return None
    return _PreviousRun(record, runs.load_state(dataset, "clean", tag_field))


def _normalized_options(options: dict[str, Any]) -> dict[str, Any]:
    return asdict(OutlierOptions(**(options or {})))


def _check_outputs(dataset: Any, previous: _PreviousRun | None, cleaned_field: str, review_field: str,
                   view_name: str) -> None:
    """Refuse output names that exist and are not the earlier cleaning's: cleaning never overwrites user data."""
    owned_fields, owned_view = previous.outputs() if previous is not None else ([], None)
    taken = [f for f in (review_field, cleaned_field) if dataset.get_field(f) is not None and f not in owned_fields]
    if taken:
        raise CleaningError(f"field{'s' if len(taken) > 1 else ''} {', '.join(repr(f) for f in taken)} already "
                            f"exist{'' if len(taken) > 1 else 's'} and {'are' if len(taken) > 1 else 'is'} not "
                            f"this cleaning's: rename {'them' if len(taken) > 1 else 'it'} (in Python, or pass "
                            f"review_field= / cleaned_field=)")
    if dataset.has_saved_view(view_name) and view_name != owned_view:
        raise CleaningError(f"saved view '{view_name}' already exists and is not this cleaning's: rename it (in "
                            f"Python, or pass view_name=)")


def _delete_run(dataset: Any, previous: _PreviousRun | None) -> None:
    """An earlier (or a failed) cleaning and what it wrote: its run, its fields and its saved view."""
    if previous is None:
        return
    fields, view = previous.outputs()
    for name in fields:
        if dataset.get_field(name) is not None:
            dataset.delete_sample_field(name)
    if view and dataset.has_saved_view(view):
        dataset.delete_saved_view(view)
    runs.delete(dataset, "clean", previous.record.target)
