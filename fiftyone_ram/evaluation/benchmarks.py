"""Upstream's OpenImages tagging benchmarks, built as FiftyOne datasets and scored beside the papers.

Upstream's ``batch_inference.py`` protocol: the benchmark's tag list is the class subset (scores of a
class do not depend on which others are asked for), mAP uses every image's score for every class, and
P / R are the macro means CP / CR. A class is predicted by the tagger's own rule,
:func:`fiftyone_ram.decision.decide`: score strictly above its threshold (the tagger's per-class
thresholds, or one ``--threshold``), where ``batch_inference.py`` writes ``>=``; the two differ only for a
score exactly equal to its threshold, and one rule keeps the benchmark's tags those of ``Tagger.predict``.
``openimages-rare``'s classes are not RAM's: they are embedded as upstream's open set (threshold 0.5).
Annotations come from upstream (pinned files, ``fiftyone_ram.assets``); images from FiftyOne's Open
Images V6 zoo dataset (test split) or a folder the user already has (``<dir>/test/<id>.jpg`` as
upstream's ``imgs/`` or ``<dir>/<id>.jpg``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fiftyone_ram.decision import decide
from fiftyone_ram.evaluation.metrics import EMPTY_CLASSES
from fiftyone_ram.jobs import PATH, THRESHOLD, Job, setting
from fiftyone_ram.tagger_spec import BATCH_SIZE

logger = logging.getLogger(__name__)

GT_FIELD = "ground_truth"


@dataclass(frozen=True)
class PaperFigure:
    mAP: float | None
    CP: float | None
    CR: float | None
    source: str

    def as_fractions(self) -> dict[str, float | None]:
        cp, cr = self.CP, self.CR
        cf1 = 2 * cp * cr / (cp + cr) if cp is not None and cr is not None else None
        scale = lambda v: None if v is None else v / 100.0  # noqa: E731
        return {"mAP": scale(self.mAP), "CP": scale(cp), "CR": scale(cr), "CF1": scale(cf1)}


@dataclass(frozen=True)
class Benchmark:
    name: str
    taglist: str  # upstream file names, see fiftyone_ram.assets.UPSTREAM_FILES
    annots: str
    descriptions: str | None  # RAM++'s LLM descriptions of the classes (open-set benchmarks)
    paper: dict[str, PaperFigure] = field(default_factory=dict)  # per model family, in %


# Published figures (../shared/docs/upstream-ram-spec.md §7), per model (our taggers by family; the comparators of
# ``fiftyone-ram compare`` by kind). P/R are CP/CR: RAM and Tag2Text at one threshold for all classes (0.86 and
# 0.68, RAM paper Table 3), RAM++ at thresholds tuned per model (RAM++ paper Table 8), so reproduce them with
# --threshold 0.86 (RAM) / 0.68 (Tag2Text); CLIP and BLIP at thresholds "tuned by hand for comparability" (RAM
# paper Table 3). Grounding-DINO has no OpenImages figure (only COCO-80 / ADE20k P/R) and SigLIP none at all.
BENCHMARKS: dict[str, Benchmark] = {
    "openimages-common": Benchmark(
        "openimages-common", "openimages_common_214_ram_taglist.txt", "openimages_common_214_ram_annots.txt", None,
        {
            "ram": PaperFigure(86.5, 80.3, 75.7, "RAM-14M: mAP RAM paper Table 2; P/R Table 3 (threshold 0.86)"),
            "ram_plus": PaperFigure(86.6, 79.9, 75.4, "RAM++-14M: mAP RAM++ paper Table 2 (86.4 with Swin-L, "
                                                      "Table 14); P/R Table 8 (tuned thresholds)"),
            "tag2text": PaperFigure(83.4, 76.4, 73.3, "Tag2Text-14M: RAM paper Tables 2, 3 (threshold 0.68)"),
            "clip": PaperFigure(73.6, 77.9, 52.9, "CLIP-400M ViT-B: mAP RAM++ paper Table 2 (hand-written prompts; "
                                                  "76.6 with LLM tag descriptions); P/R RAM paper Table 3"),
            "blip": PaperFigure(75.7, 78.6, 55.1, "BLIP-129M ViT-B: mAP RAM++ paper Table 2 (BLIP-ITC); P/R RAM "
                                                  "paper Table 3"),
        },
    ),
    "openimages-rare": Benchmark(
        "openimages-rare", "openimages_rare_200_ram_taglist.txt", "openimages_rare_200_ram_annots.txt",
        "openimages_rare_200_llm_tag_descriptions.json",
        {
            "ram": PaperFigure(69.2, 53.8, 54.3, "RAM-14M open-set: mAP RAM paper Table 2; P/R Table 3 (0.86)"),
            "ram_plus": PaperFigure(75.4, 56.3, 76.2, "RAM++-14M: mAP RAM++ paper Table 2 (75.0 with Swin-L, "
                                                      "Table 14); P/R Table 8 (tuned thresholds)"),
            "clip": PaperFigure(66.2, 67.5, 46.5, "CLIP-400M ViT-B: mAP RAM++ paper Table 2 (hand-written prompts; "
                                                  "70.2 with LLM tag descriptions); P/R RAM paper Table 3"),
            "blip": PaperFigure(61.1, 65.2, 46.5, "BLIP-129M ViT-B: mAP RAM++ paper Table 2 (BLIP-ITC); P/R RAM "
                                                  "paper Table 3"),
        },
    ),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}") from None


def benchmark_files(
    bench: Benchmark, taglist: str | Path | None = None, annots: str | Path | None = None
) -> tuple[Path, Path]:
    """Explicit paths win; otherwise the pinned upstream files (downloaded once, sha256-checked)."""
    from fiftyone_ram import assets

    return (Path(taglist) if taglist else assets.upstream_file(bench.taglist),
            Path(annots) if annots else assets.upstream_file(bench.annots))


def read_annotations(path: str | Path) -> dict[str, list[str]]:
    """``split/image_id,tag,tag,...`` lines → {``split/image_id``: tags} in file order."""
    out: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        relpath, *tags = line.rstrip("\n").split(",")
        if not relpath:
            raise ValueError(f"{path}:{number}: no image path")
        out[relpath.strip()] = [t.strip() for t in tags if t.strip()]
    return out


def build_dataset(
    bench: Benchmark | str,
    *,
    taglist: str | Path | None = None,
    annots: str | Path | None = None,
    images_dir: str | Path | None = None,
    max_samples: int | None = None,
    dataset_name: str | None = None,
    overwrite: bool = False,
) -> Any:
    """A FiftyOne dataset of the benchmark's images with their upstream tags in ``ground_truth``.

    Images without a file are left out and counted in ``dataset.info["benchmark"]["missing_images"]``.
    ``max_samples`` takes the first images of the annotation file (a quick, reproducible subset).
    """
    import fiftyone as fo

    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    taglist_path, annots_path = benchmark_files(bench, taglist, annots)
    classes = _read_lines(taglist_path)
    annotations = read_annotations(annots_path)
    relpaths = list(annotations)[:max_samples] if max_samples else list(annotations)
    name = dataset_name or f"fiftyone-ram-{bench.name}" + (f"-{max_samples}" if max_samples else "")
    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    if images_dir is not None:
        paths = {rel: _find_image(Path(images_dir), rel) for rel in relpaths}
    else:
        paths = _download_openimages(relpaths)
    dataset = fo.Dataset(name, persistent=True)
    samples = []
    for rel in relpaths:
        if paths.get(rel) is None:
            continue
        gt = fo.Classifications(classifications=[fo.Classification(label=t) for t in dict.fromkeys(annotations[rel])])
        samples.append(fo.Sample(filepath=str(paths[rel]), open_images_id=rel.split("/")[-1], **{GT_FIELD: gt}))
    dataset.add_samples(samples, progress=False)
    missing = len(relpaths) - len(samples)
    dataset.info["benchmark"] = {"name": bench.name, "classes": classes, "images_listed": len(relpaths),
                                 "missing_images": missing, "annotations": str(annots_path)}
    dataset.save()
    if missing:
        logger.warning("%d of %d benchmark images were not found and are left out", missing, len(relpaths))
    return dataset


Scores = list[tuple[np.ndarray, np.ndarray] | None]  # per image: (logits, probabilities), None: unreadable


def predict_benchmark(
    dataset: Any,
    tagger: Any,
    classes: Sequence[str],
    *,
    label_field: str,
    threshold: float | None = None,
    batch_size: int = 32,
    reuse_scores: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Score every image for ``classes`` and store ``Classifications`` (the tags the decision rule keeps,
    and the logits over ``classes``); returns the per-class thresholds used.

    With ``reuse_scores`` the logits already stored in ``label_field`` are used when every sample has
    them (re-deciding tags at new thresholds without running the model again). Images that cannot be read
    are reported and get no prediction (upstream substitutes a black image).
    """
    import fiftyone as fo

    thresholds = _class_thresholds(tagger, classes, threshold)
    scores = _stored_scores(dataset, label_field, len(classes)) if reuse_scores else None
    if scores is None:
        scores = _computed_scores(dataset.values("filepath"), tagger, classes, batch_size, progress)
    labels = []
    for score in scores:
        if score is None:
            labels.append(None)
            continue
        logits, p = score
        (keep,) = decide(p[None, :], thresholds)
        labels.append(fo.Classifications(
            classifications=[fo.Classification(label=classes[j], confidence=float(p[j])) for j in keep],
            logits=logits,
        ))
    unreadable = sum(score is None for score in scores)
    if unreadable:
        logger.warning("%d images could not be read and have no prediction", unreadable)
    dataset.set_values(label_field, labels)
    return thresholds


def _computed_scores(paths: list[str], tagger: Any, classes: Sequence[str], batch_size: int,
                     progress: Callable[[int, int], None] | None) -> Scores:
    """Scores over ``classes`` per image through the tagger's loop; an unreadable image is logged."""
    out: Scores = [None] * len(paths)
    done = 0
    for batch in tagger.iter_batches(paths, tags=list(classes), batch_size=batch_size):
        for position, logits, p in zip(batch.positions, batch.logits, batch.probabilities):
            out[position] = (logits, p)
        for position, message in batch.errors.items():
            logger.warning("cannot read %s: %s", paths[position], message)
        done += len(batch.positions) + len(batch.errors)
        if progress:
            progress(done, len(paths))
    return out


@dataclass
class BenchmarkReport:
    benchmark: Benchmark
    family: str | None
    results: Any
    images: int
    missing_images: int
    threshold: float | None

    def paper(self) -> PaperFigure | None:
        return self.benchmark.paper.get(self.family or "")

    def to_json_dict(self) -> dict[str, Any]:
        paper = self.paper()
        return {
            "benchmark": self.benchmark.name,
            "family": self.family,
            "images": self.images,
            "missing_images": self.missing_images,
            "threshold": self.threshold if self.threshold is not None else "per-class",
            "ours": {k: self.results.summary.get(k) for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")},
            "paper": ({**paper.as_fractions(), "source": paper.source} if paper else None),
            "evaluation": self.results.to_json_dict(),
        }


@dataclass(kw_only=True)
class BenchmarkJob(Job):
    """The settings of a benchmark run (the tagger is given to :meth:`run`)."""

    what = "benchmark"

    name: str = setting(choices=tuple(BENCHMARKS), flag=False, help="the benchmark")
    threshold: float | None = setting(None, kind=THRESHOLD,
                                      help="one threshold for all classes (paper P/R: 0.86 for RAM, 0.68 for "
                                           "Tag2Text); default: the per-class thresholds")
    batch_size: int = setting(BATCH_SIZE, low=1, help="images per model call")
    taglist: str | None = setting(None, kind=PATH, help="the benchmark's tag list (default: upstream's, "
                                                         "downloaded once)")
    annots: str | None = setting(None, kind=PATH, help="the benchmark's annotations (default: upstream's, "
                                                        "downloaded once)")
    images_dir: str | None = setting(None, help="the folder of the Open Images test images (<dir>/test/<id>.jpg "
                                                "or <dir>/<id>.jpg); default: FiftyOne's Open Images V6 zoo dataset")
    descriptions: str | None = setting(None, kind=PATH, help="RAM++ open set: LLM descriptions of the "
                                                             "benchmark's tags (default: upstream's, for rare)")
    text_encoder: str | None = setting(None, help="the CLIP text encoder of tags outside the model's list (hub "
                                                  "name or folder)")
    max_samples: int | None = setting(None, low=1, help="only the first N images of the benchmark")
    dataset_name: str | None = setting(None, help="the FiftyOne dataset to build or reuse")
    eval_key: str = setting("benchmark", help="the evaluation key of the run")
    label_field: str | None = setting(None, help="the field for the predictions (default: the model family)")
    empty_classes: str = setting("exclude", choices=EMPTY_CLASSES, flag=False,
                                 help="classes without positives in a subset: left out, or AP 0 (upstream)")
    reuse_scores: bool = setting(False, help="use the logits already stored in the label field instead of "
                                             "running the model again")

    def run(self, tagger: Any, progress: Callable[[int, int], None] | None = None) -> BenchmarkReport:
        return run_benchmark(self.name, tagger, job=self, progress=progress)


def run_benchmark(bench: Benchmark | str, tagger: Any, *, job: BenchmarkJob | None = None,
                  progress: Callable[[int, int], None] | None = None, **settings: Any) -> BenchmarkReport:
    """Build (or reuse) the benchmark dataset, tag it, and evaluate it as a FiftyOne evaluation run
    (``settings``: :class:`BenchmarkJob`'s).

    Classes outside the tagger's list (``openimages-rare``) are embedded as upstream's open set: RAM from
    prompt templates, RAM++ from the benchmark's LLM descriptions (``descriptions``, default upstream's
    file); both need a CLIP text encoder (``text_encoder``, see ``fiftyone_ram.vocabulary``).
    Every class of the full benchmarks has positives, so ``empty_classes`` only matters for subsets
    (``max_samples``): upstream would count their empty classes as AP 0 (``"zero"``)."""
    name = bench if isinstance(bench, str) else bench.name
    if job is None:
        job = BenchmarkJob(name=name, **settings)
    taglist, annots, images_dir, max_samples = job.taglist, job.annots, job.images_dir, job.max_samples
    dataset_name, threshold, batch_size, eval_key = job.dataset_name, job.threshold, job.batch_size, job.eval_key
    label_field, empty_classes, reuse_scores = job.label_field, job.empty_classes, job.reuse_scores
    descriptions, text_encoder = job.descriptions, job.text_encoder
    from fiftyone_ram.evaluation.run import evaluate_tags

    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    dataset = build_dataset(bench, taglist=taglist, annots=annots, images_dir=images_dir,
                            max_samples=max_samples, dataset_name=dataset_name)
    classes = dataset.info["benchmark"]["classes"]
    family = getattr(tagger, "family", None)
    known = set(tagger.tag_list)
    if not reuse_scores and any(c not in known for c in classes):
        tagger = _open_set_tagger(bench, tagger, classes, descriptions, text_encoder)
    field = label_field or (family or "tags").replace("+", "_plus")
    thresholds = predict_benchmark(dataset, tagger, classes, label_field=field, threshold=threshold,
                                   batch_size=batch_size, reuse_scores=reuse_scores, progress=progress)
    results = evaluate_tags(dataset, field, GT_FIELD, eval_key=eval_key, model_tags=classes,
                            threshold=thresholds, classes=classes, empty_classes=empty_classes)
    return BenchmarkReport(bench, family, results, len(dataset), dataset.info["benchmark"]["missing_images"], threshold)


def format_benchmark(report: BenchmarkReport) -> str:
    """Our figures beside the paper's, in %."""
    from tabulate import tabulate

    paper = report.paper()
    ours = report.results.summary
    rows = []
    theirs = paper.as_fractions() if paper else {}
    for key, label in (("mAP", "mAP"), ("CP", "P (CP)"), ("CR", "R (CR)"), ("CF1", "F1 (of CP, CR)")):
        rows.append([label, percent(ours.get(key)), percent(theirs.get(key))])
    head = (f"{report.benchmark.name}: {report.images} images ({report.missing_images} missing), "
            f"{ours.get('num_classes')} classes, model family {report.family or '?'}, thresholds "
            f"{report.threshold if report.threshold is not None else 'per-class (the tagger)'}")
    table = tabulate(rows, headers=["", "ours", "paper"], tablefmt="simple")
    note = f"paper: {paper.source}" if paper else "paper: no published figure for this model family"
    return "\n".join([head, "", table, "", note])


def _stored_scores(dataset: Any, label_field: str, num_classes: int) -> Scores | None:
    if dataset.get_field(label_field) is None:
        return None
    stored = dataset.values(f"{label_field}.logits")
    if not stored or any(v is None or len(v) != num_classes for v in stored):
        return None
    out: Scores = []
    for v in stored:
        logits = np.asarray(v, dtype=np.float64)
        out.append((logits, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)))
    return out


def percent(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def _open_set_tagger(
    bench: Benchmark, tagger: Any, classes: Sequence[str], descriptions: Any, text_encoder: Any
) -> Any:
    """The tagger answering the benchmark's classes, new ones embedded as upstream's open set (threshold 0.5)."""
    from fiftyone_ram.vocabulary import TextEncoderError, build_vocabulary

    if tagger.family == "ram_plus" and descriptions is None and bench.descriptions:
        from fiftyone_ram import assets

        descriptions = assets.upstream_file(bench.descriptions)
    try:
        vocabulary = build_vocabulary(tagger.family, tagger.tag_list, tagger.thresholds, tags=list(classes),
                                      text_encoder=text_encoder, device=tagger.device,
                                      descriptions=descriptions if tagger.family == "ram_plus" else None)
    except TextEncoderError as exc:
        raise ValueError(f"{bench.name}: tags outside the model's list are embedded with a CLIP text encoder, "
                         f"which is not available: {exc}") from exc
    return tagger.with_vocabulary(vocabulary)


def _class_thresholds(tagger: Any, classes: Sequence[str], threshold: float | None) -> np.ndarray:
    if threshold is not None:
        return np.full(len(classes), threshold, dtype=np.float32)
    known = set(tagger.tag_list)
    if any(c not in known for c in classes):  # reused open-set scores: upstream's open-set threshold
        from fiftyone_ram.vocabulary import OPEN_SET_THRESHOLD

        return np.full(len(classes), OPEN_SET_THRESHOLD, dtype=np.float32)
    return np.asarray(tagger.thresholds, dtype=np.float32)[tagger.class_indices(classes)]


def _read_lines(path: Path) -> list[str]:
    from fiftyone_ram.tag_files import read_tag_list

    return read_tag_list(path)


def _find_image(root: Path, relpath: str) -> Path | None:
    for candidate in (root / f"{relpath}.jpg", root / f"{Path(relpath).name}.jpg", root / relpath):
        if candidate.is_file():
            return candidate
    return None


def _download_openimages(relpaths: list[str]) -> dict[str, Path]:
    """Fetch the images with FiftyOne's Open Images V6 zoo dataset (test split, images only)."""
    import fiftyone.zoo as foz

    ids = [r.split("/")[-1] for r in relpaths]
    zoo = foz.load_zoo_dataset("open-images-v6", split="test", label_types=[], image_ids=ids,
                               dataset_name=f"fiftyone-ram-openimages-download-{uuid.uuid4().hex[:8]}")
    by_id = {Path(p).stem: Path(p) for p in zoo.values("filepath")}
    zoo.delete()  # only the files (in FiftyOne's dataset zoo folder) are kept
    return {rel: by_id.get(rel.split("/")[-1]) for rel in relpaths}
