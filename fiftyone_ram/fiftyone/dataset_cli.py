"""``fiftyone-ram tag ... --dataset NAME``: tag images into a FiftyOne dataset from the command line.

Kept apart from ``fiftyone_ram/cli.py`` so that the plain ``tag`` command does not import FiftyOne.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import click


def add_images(dataset_name: str, paths: Iterable[Path]):
    """The persistent dataset ``dataset_name`` (created if needed) with ``paths`` added unless already in it.

    Paths that do not exist are added too: the run then records them as unreadable instead of dropping them.
    """
    import fiftyone as fo

    if fo.dataset_exists(dataset_name):
        dataset = fo.load_dataset(dataset_name)
    else:
        dataset = fo.Dataset(dataset_name, persistent=True)
    known = set(dataset.values("filepath"))
    new = list(dict.fromkeys(str(Path(p).expanduser().resolve()) for p in paths))
    new = [p for p in new if p not in known]
    if new:
        dataset.add_samples([fo.Sample(filepath=p) for p in new])
    return dataset


def tag_dataset(tagger, *, dataset_name: str, paths: Iterable[Path], field: str, resume: bool, overwrite: bool,
                batch_size: int, num_workers: int | None, threshold: float | None, language: str,
                caption: bool, sample_tags: bool, as_json: bool, checkpoint: str | None,
                tag_list: str | None, tag_list_chinese: str | None, thresholds: str | None,
                device: str | None, vocabulary: dict | None = None) -> int:
    """Tag the dataset and print the summary; returns the exit status (1 when some image was unreadable).

    ``vocabulary``: the vocabulary options the tagger was loaded with (``tags``, ``descriptions``, ...)."""
    from fiftyone_ram import assets
    from fiftyone_ram.fiftyone import FieldExistsError, from_tagger, tag_samples

    if checkpoint is None and tagger.config.name is not None:
        checkpoint = str(assets.weights_path(tagger.config.name))  # lets spawned workers re-read the weights
    model = from_tagger(tagger, checkpoint_path=checkpoint, tag_list=tag_list, tag_list_chinese=tag_list_chinese,
                        thresholds=thresholds, device=device, language=language, confidence_thresh=threshold,
                        caption=caption, **(vocabulary or {}))
    dataset = add_images(dataset_name, paths)
    try:
        summary = tag_samples(dataset, model, field, overwrite=overwrite, resume=resume, sample_tags=sample_tags,
                              batch_size=batch_size, num_workers=num_workers,
                              progress=not as_json)  # the bar writes to stdout: keep --json output clean
    except FieldExistsError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"dataset": dataset.name, **summary.to_dict()}, ensure_ascii=False))
    else:
        click.echo(f"dataset '{dataset.name}': {summary}")
    return 1 if summary.failed or summary.untagged else 0
