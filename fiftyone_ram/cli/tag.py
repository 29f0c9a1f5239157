"""``fiftyone-ram tag``: tag image files and folders, printing the tags or storing them in a FiftyOne dataset.

The printing path imports neither FiftyOne nor torch before a tagger is loaded; ``--dataset`` imports FiftyOne
first, to refuse a bad field or option before the model is loaded. Entries of the inputs that cannot be tagged
(dangling links, link loops, pipes) are reported one line each and make the exit status 1, as unreadable
images do; names that are not UTF-8 are printed with their bytes escaped, and skipped with ``--dataset``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import load_tagger_from, tagger_options
from fiftyone_ram.driver.tagging import NothingToTagError, TagJob
from fiftyone_ram.progress import ConsoleProgress
from fiftyone_ram.vocabulary.spec import VocabularySpec
from fiftyone_ram.image_files import IMAGE_SUFFIXES, Found, find_images, is_utf8, printable

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger

__all__ = ["tag", "iter_images", "tag_paths", "tag_into_dataset", "IMAGE_SUFFIXES"]


@click.command("tag")
@click.argument("inputs", nargs=-1, required=False, type=click.Path())
@tagger_options
@settings.options(TagJob, "threshold")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="The language of the tag names.")
@click.option("--caption/--no-caption", default=None, help="Tag2Text: also print a caption (default: on).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--dataset", "dataset_name", default=None,
              help="Tag into this FiftyOne dataset (created from INPUTS if missing; INPUTS are added to it) "
                   "instead of printing.")
@settings.options(TagJob, "label_field", "resume", "overwrite", "store_logits", "sample_tags", "batch_size",
                  "num_workers", "executor", "ray_address", "workers", "gpus_per_worker")
@settings.options(VocabularySpec, "tags", "descriptions", "keep_builtin", "new_tag_threshold", "text_encoder")
def tag(inputs, lang, caption, as_json, dataset_name, **params):
    """Tag images (files or folders) and print each tag with its probability, or store them in a dataset."""
    job = settings.job_from(TagJob, params)
    if not inputs and not dataset_name:
        raise click.UsageError("give image files or folders, or --dataset NAME")
    if job.executor != "local" and not dataset_name:
        raise click.UsageError("--executor ray tags into a dataset: add --dataset NAME")
    job.check_executor()  # a cluster address nobody answers at: before FiftyOne (seconds) or the model is loaded
    if dataset_name:  # what can be refused without the model is refused before it is loaded
        job.check_data(_existing(dataset_name), adding=bool(inputs))
    tagger = load_tagger_from(params, vocabulary=settings.job_from(VocabularySpec, params),
                              batch_size=job.batch_size)
    with_caption = tagger.family == "tag2text" if caption is None else caption
    if dataset_name:
        raise SystemExit(tag_into_dataset(tagger, job, dataset_name=dataset_name, inputs=inputs, language=lang,
                                          caption=with_caption, as_json=as_json))
    failed = 0
    images: list[Path] = []
    for found in find_images(inputs):
        if found.is_image:
            images.append(found.path)
        else:
            failed += found.problem is not None
            _report(found, as_json)
    for record in tag_paths(tagger, images, batch_size=job.batch_size, threshold=job.threshold, language=lang,
                            caption=with_caption):
        failed += "error" in record
        _emit(record, as_json)
    if failed:
        click.echo(f"{failed} file(s) could not be read", err=True)
        raise SystemExit(1)


def iter_images(inputs: Iterable[str]) -> Iterator[Path]:
    """The image files of ``inputs`` (see :func:`fiftyone_ram.image_files.find_images`), without the reports."""
    return (found.path for found in find_images(inputs) if found.is_image)


def _report(found: Found, as_json: bool, *, skipped: bool = False) -> None:
    """One line on stderr for an entry that is not tagged: why (a problem) or what it is (a note)."""
    path = printable(found.path)
    if found.problem is not None:
        reason = printable(f"skipped: {found.problem}" if skipped else found.problem)  # may quote a link target
        click.echo(json.dumps({"image": path, "error": reason}, ensure_ascii=False) if as_json
                   else f"{path}: error: {reason}", err=True)
    else:
        click.echo(json.dumps({"image": path, "note": found.note}, ensure_ascii=False) if as_json
                   else f"{path}: note: {found.note}", err=True)


def tag_paths(tagger: Tagger, paths: Iterable[Path], *, batch_size: int, threshold: float | None = None,
              language: str = "en", caption: bool = False) -> Iterator[dict[str, Any]]:
    """One record per path, in input order: ``{"image", "tags"[, "caption"]}``, or ``{"image", "error"}`` for
    a file that cannot be read (the others of its batch are still tagged).

    ``batch_size`` paths go through :meth:`Tagger.iter_batches` at a time: decoded, tagged in one model
    call and, for Tag2Text, captioned from the same image tokens.
    """
    paths = iter(paths)
    while chunk := list(islice(paths, batch_size)):  # itertools.batched is Python 3.12+
        for batch in tagger.iter_batches(chunk, caption=caption, batch_size=len(chunk)):
            predictions = tagger.decide(batch.probabilities, batch.indices, threshold=threshold, language=language)
            records: dict[int, dict[str, Any]] = {
                p: {"image": str(chunk[p]), "error": message} for p, message in batch.errors.items()}
            for row, position in enumerate(batch.positions):
                record = {"image": str(chunk[position]),
                          "tags": [{"tag": name, "probability": round(p, 6)} for name, p in predictions[row]]}
                if batch.captions is not None:
                    record["caption"] = batch.captions[row]
                records[position] = record
            yield from (records[p] for p in sorted(records))


def _emit(record: dict[str, Any], as_json: bool) -> None:
    """A record as one JSON line or as text; unreadable files go to stderr either way. Paths and messages are
    made valid UTF-8 (:func:`~fiftyone_ram.image_files.printable`)."""
    err = "error" in record
    record = {key: printable(value) if isinstance(value, str) else value for key, value in record.items()}
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False), err=err)
    elif err:
        click.echo(f"{record['image']}: error: {record['error']}", err=True)
    else:
        line = " | ".join(f"{t['tag']} ({t['probability']:.2f})" for t in record["tags"])
        click.echo(f"{record['image']}: {line}")
        if "caption" in record:
            click.echo(f"  caption: {record['caption']}")


def _existing(dataset_name: str):
    """The dataset if it exists (None: the run creates it), FiftyOne's database started first."""
    import fiftyone as fo

    from fiftyone_ram.driver.claims import connect

    connect()  # before FiftyOne's first use: runs started at once would each start a database server
    return fo.load_dataset(dataset_name) if fo.dataset_exists(dataset_name) else None


def tag_into_dataset(tagger: Tagger, job: TagJob, *, dataset_name: str, inputs: Iterable[str], language: str,
                     caption: bool, as_json: bool) -> int:
    """``tag --dataset``: add the images of ``inputs`` to the dataset, tag it, print the summary; returns the
    exit status (1 when some image was unreadable, skipped or left untagged).

    Everything the job would refuse is refused before a file is added. Entries that cannot be samples (a dangling
    link, a name that is not UTF-8, which FiftyOne cannot store) are skipped with one line each."""
    from fiftyone_ram.driver.datasets import add_images
    from fiftyone_ram.fiftyone import from_tagger

    model = from_tagger(tagger, language=language, caption=caption)
    existing = _existing(dataset_name)
    if existing is not None:
        job.check(existing, model, adding=True)
    paths, skipped = [], {}
    for found in find_images(inputs):
        if found.is_image and not is_utf8(found.path):
            found = Found(found.path, problem="the file name is not valid UTF-8, which FiftyOne cannot store: "
                                              "rename the file")
        if found.is_image:
            paths.append(found.path)
            continue
        _report(found, as_json, skipped=True)
        if found.problem is not None:
            skipped[printable(found.path)] = found.problem
    if existing is None and not paths:
        raise NothingToTagError(f"nothing to tag: no image among the inputs, and no dataset {dataset_name!r} yet "
                                f"(nothing was written)")
    dataset = add_images(dataset_name, paths)
    # The bar writes to stderr: --json output stays clean.
    summary = job.run(dataset, model, progress=False if as_json else ConsoleProgress())
    if as_json:
        click.echo(json.dumps({"dataset": dataset.name, **summary.to_dict(), "skipped_files": skipped},
                              ensure_ascii=False))
    else:
        click.echo(f"\ndataset '{dataset.name}': {summary}")
        if skipped:
            click.echo(f"{len(skipped)} file(s) skipped (see the lines above)")
    if summary.problem:  # nothing usable: said as such (exit status 1, as for unreadable images)
        click.echo(f"Error: {summary.problem}", err=True)
    return 1 if summary.failed or summary.untagged or skipped else 0
