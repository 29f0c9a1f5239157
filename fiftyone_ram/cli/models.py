"""``fiftyone-ram models list | download | info``: the released checkpoints (from the registry) and their cache."""

from __future__ import annotations

import json

import click

from fiftyone_ram import assets
from fiftyone_ram.cli.options import CommandError
from fiftyone_ram.models.registry import FAMILY_NAMES, default_cfgs, get_variant

# Display names of the families (the operators' forms hold the same table; the registry has none).


def describe(name: str) -> dict:
    """Everything known about a released model, without loading it."""
    cfg = get_variant(name)
    arch, spec = cfg.architecture, cfg.weights
    path = assets.weights_path(name)
    return {
        "name": cfg.name,
        "zoo_name": cfg.zoo_name,
        "family": cfg.family,
        "image_size": arch.image_size,
        "backbone": f"Swin (embed_dim {arch.swin.embed_dim}, depths {list(arch.swin.depths)})",
        "embedding_dim": cfg.embedding_dim,
        "weights": spec.filename,
        "source": spec.page,
        "size_bytes": spec.size or spec.approx_size,
        "size_exact": spec.size is not None,
        "sha256": spec.sha256,
        "path": str(path),
        "downloaded": path.is_file(),
        "data_files": list(cfg.labels.files),
    }


@click.group("models")
def models() -> None:
    """List, download and describe the released RAM, RAM++ and Tag2Text models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
def list_models(as_json: bool) -> None:
    """The released models, their size and whether they are downloaded."""
    for name in default_cfgs:
        info = describe(name)
        if as_json:
            click.echo(json.dumps(info))
            continue
        approx = "" if info["size_exact"] else "~"
        size = f"{approx}{info['size_bytes'] / 1e9:.2f} GB" if info["size_bytes"] else "size unknown"
        state = "downloaded" if info["downloaded"] else "not downloaded"
        click.echo(f"{name:26s} {FAMILY_NAMES[info['family']]:9s} {size:>12s}  {state}")


@models.command("download")
@click.argument("names", nargs=-1, required=True, type=click.Choice([*default_cfgs, "all"]))
def download(names: tuple[str, ...]) -> None:
    """Download released weights (and the tag lists they need) into the cache; already cached files are kept."""
    chosen = list(default_cfgs) if "all" in names else list(dict.fromkeys(names))
    try:
        for name in chosen:
            for data_file in get_variant(name).labels.files:
                assets.upstream_file(data_file)
            click.echo(f"{name}: {assets.download_weights(name)}")
    except assets.AssetError as exc:
        raise CommandError(str(exc)) from None


@models.command("info")
@click.argument("name", type=click.Choice(list(default_cfgs)))
@click.option("--json", "as_json", is_flag=True)
def info(name: str, as_json: bool) -> None:
    """Architecture, weights source, checksum and cache location of one model."""
    details = describe(name)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        click.echo(f"{key:14s} {value if value is not None else '-'}")
