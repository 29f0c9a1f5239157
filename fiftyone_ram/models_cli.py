"""``fiftyone-ram models list | download | info``: the released checkpoints and where they are cached."""

from __future__ import annotations

import json

import click

from fiftyone_ram import assets
from fiftyone_ram.models.config import VARIANTS

#: Upstream data files each family needs besides its weights.
_DATA_FILES = {
    "ram": ("ram_tag_list.txt", "ram_tag_list_chinese.txt", "ram_tag_list_threshold.txt"),
    "ram_plus": ("ram_tag_list.txt", "ram_tag_list_chinese.txt", "ram_tag_list_threshold.txt"),
    "tag2text": ("tag2text_ori_tag_list.txt",),
}
_FAMILY_LABEL = {"ram": "RAM", "ram_plus": "RAM++", "tag2text": "Tag2Text"}
#: Sizes not pinned in ``assets`` (the Space re-uploaded the file; the size is the upstream README's).
_APPROX_SIZE = {"tag2text_swin_14m": 4_480_000_000}


def zoo_name(name: str) -> str:
    return name.replace("_", "-")


def describe(name: str) -> dict:
    """Everything known about a released model, without loading it."""
    config = VARIANTS[name]
    spec = assets.RELEASED_WEIGHTS[name]
    path = assets.weights_path(name)
    prefix = "spaces/" if spec.repo_type == "space" else ""
    return {
        "name": name,
        "zoo_name": zoo_name(name),
        "family": config.family,
        "image_size": config.image_size,
        "backbone": f"Swin (embed_dim {config.swin.embed_dim}, depths {list(config.swin.depths)})",
        "embedding_dim": config.embed_dim if config.family != "tag2text" else config.swin.num_features,
        "weights": spec.filename,
        "source": f"https://huggingface.co/{prefix}{spec.repo_id}",
        "size_bytes": spec.size or _APPROX_SIZE.get(name),
        "size_exact": spec.size is not None,
        "sha256": spec.sha256,
        "path": str(path),
        "downloaded": path.is_file(),
        "data_files": list(_DATA_FILES[config.family]),
    }


@click.group("models")
def models() -> None:
    """List, download and describe the released RAM, RAM++ and Tag2Text models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
def list_models(as_json: bool) -> None:
    """The released models, their size and whether they are downloaded."""
    for name in VARIANTS:
        info = describe(name)
        if as_json:
            click.echo(json.dumps(info))
            continue
        approx = "" if info["size_exact"] else "~"
        size = f"{approx}{info['size_bytes'] / 1e9:.2f} GB" if info["size_bytes"] else "size unknown"
        state = "downloaded" if info["downloaded"] else "not downloaded"
        click.echo(f"{name:26s} {_FAMILY_LABEL[info['family']]:9s} {size:>12s}  {state}")


@models.command("download")
@click.argument("names", nargs=-1, required=True, type=click.Choice([*VARIANTS, "all"]))
def download(names: tuple[str, ...]) -> None:
    """Download released weights (and the tag lists they need) into the cache; already cached files are kept."""
    chosen = list(VARIANTS) if "all" in names else list(dict.fromkeys(names))
    try:
        for name in chosen:
            for data_file in _DATA_FILES[VARIANTS[name].family]:
                assets.upstream_file(data_file)
            click.echo(f"{name}: {assets.download_weights(name)}")
    except assets.AssetError as exc:
        raise click.ClickException(str(exc)) from None


@models.command("info")
@click.argument("name", type=click.Choice(list(VARIANTS)))
@click.option("--json", "as_json", is_flag=True)
def info(name: str, as_json: bool) -> None:
    """Architecture, weights source, checksum and cache location of one model."""
    details = describe(name)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        click.echo(f"{key:14s} {value if value is not None else '-'}")
