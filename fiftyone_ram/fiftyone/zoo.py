"""The work behind the remote zoo source's hooks (``zoo/__init__.py`` only forwards here).

The hooks module is executed from the zoo folder by path on every call, is not importable by DataLoader
workers, and must stay cheap; so everything real lives in this installed package.

Zoo names: ``ram-plus-swin-large-14m``, ``ram-swin-large-14m``, ``tag2text-swin-14m`` (the released weights)
and ``recognize-anything-custom`` (your own checkpoint: FiftyOne downloads a named model's weights before
``load_model`` sees any argument, so loading a fine-tuned or small checkpoint offline needs an entry with
nothing to download).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CUSTOM = "recognize-anything-custom"
SOURCE_NAME = "fiftyone-ram/recognize-anything"
SOURCE_URL = "https://github.com/fiftyone-ram/fiftyone-ram"
_AUTHOR = "Xinyu Huang, Youcai Zhang et al."
_DATE_ADDED = "2026-11-27"
_TAGS = ["classification", "logits", "embeddings", "torch", "multilabel", "tagging", "recognize-anything"]
_REQUIREMENTS = {"packages": ["fiftyone-ram", "torch", "torchvision", "timm>=1.0", "transformers>=4.40"],
                 "cpu": {"support": True}, "gpu": {"support": True}}
_CUSTOM_FILENAME = "recognize_anything_custom.txt"


def base_name(model_name: str) -> str:
    """``name@version`` or ``source/name`` to the manifest's base name."""
    return model_name.split("@", 1)[0].rsplit("/", 1)[-1]


def download_model(model_name: str, model_path: str) -> None:
    """Put the released weights at ``model_path`` (a link to fiftyone-ram's own cache, so the CLI and the
    zoo share one copy); for the custom entry write the small file that marks it as present."""
    name = base_name(model_name)
    if name == CUSTOM:  # the committed zoo folder already holds it; a copied source may not
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        Path(model_path).write_text(_CUSTOM_NOTE)
        return
    from fiftyone_ram import assets

    try:
        cached = assets.download_weights(_variant(name))
    except assets.AssetError as exc:
        raise assets.AssetError(
            f"{exc}\nFiftyOne fetches a named zoo model's weights before loading it, even with "
            f"checkpoint_path=; to load your own checkpoint without them use "
            f"foz.load_zoo_model('{CUSTOM}', checkpoint_path=..., model='{_variant(name)}')") from exc
    link_or_copy(cached, Path(model_path))


def load_model(model_name: str, model_path: str, **kwargs: Any):
    """A :class:`~fiftyone_ram.fiftyone.model.RamModel`; ``kwargs`` are its config keys
    (``fiftyone_ram.fiftyone.model.CONFIG_KEYS``; the vocabulary as ``vocabulary={...}`` or its fields flat)."""
    from fiftyone_ram.fiftyone.model import load_model as build

    name = base_name(model_name)
    if name == CUSTOM:
        if not kwargs.get("checkpoint_path"):
            raise ValueError(f"{CUSTOM} needs checkpoint_path= (and config= or model=, family= when the config "
                             f"does not name it)")
        from fiftyone_ram.model_folder import is_model_folder

        if not kwargs.get("config") and not kwargs.get("model") and not is_model_folder(kwargs["checkpoint_path"]):
            raise ValueError(f"{CUSTOM} needs config= (an architecture JSON) or model= (a released variant), "
                             f"unless checkpoint_path is a model folder (fine-tuning's output)")
        return build(**kwargs)
    kwargs.setdefault("model", _variant(name))
    if not kwargs.get("checkpoint_path"):
        kwargs["checkpoint_path"] = model_path
    return build(**kwargs)


def _variant(name: str) -> str:
    from fiftyone_ram.models.registry import is_variant, list_variants

    if not is_variant(name):
        zoo_names = [n.replace("_", "-") for n in list_variants()]
        raise ValueError(f"unknown model {name!r}; this source has {', '.join([*zoo_names, CUSTOM])}")
    return name.replace("-", "_")


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link (same disk, no second copy), else symlink, else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    for make in (os.link, os.symlink):
        try:
            make(source, target)
            return
        except OSError:
            continue
    shutil.copyfile(source, target)


_CUSTOM_NOTE = """\
This entry loads your own RAM / RAM++ / Tag2Text checkpoint; it has no weights of its own:

    foz.load_zoo_model("recognize-anything-custom", checkpoint_path="my.pth", config="arch.json", family="ram")
    foz.load_zoo_model("recognize-anything-custom", checkpoint_path="finetuned_folder")
"""


def resolve_input(model_name: str, ctx):
    """The tagger options for ``@voxel51/zoo``'s "Apply zoo model" form (nested there as ``remote_params``)."""
    import fiftyone.operators.types as types

    from fiftyone_ram.app import forms

    name = base_name(model_name)
    values = dict(ctx.params.get("remote_params") or {})
    values.setdefault("model", forms.CUSTOM if name == CUSTOM else _variant(name))
    inputs = types.Object()
    family, _ = forms.add_tagger_inputs(inputs, values, thresholds=False)
    forms.add_output_options(inputs, values, family)
    forms.add_vocabulary_inputs(inputs, values, family)
    return types.Property(inputs)


def parse_parameters(model_name: str, ctx, params: dict) -> None:
    """Form values to ``load_model`` keywords, in place."""
    from fiftyone_ram.app.forms import CUSTOM as FORM_CUSTOM, model_kwargs

    values = dict(params)
    values.setdefault("model", FORM_CUSTOM if base_name(model_name) == CUSTOM else _variant(base_name(model_name)))
    kwargs = model_kwargs(values)
    if base_name(model_name) != CUSTOM:
        kwargs.pop("model", None)  # the zoo entry names it
    params.clear()
    params.update(kwargs)


def build_manifest() -> dict[str, Any]:
    """The zoo source's ``manifest.json``, generated from the variant registry (``zoo/manifest.json`` is this,
    written by ``python -m fiftyone_ram.fiftyone.zoo zoo/manifest.json``; a test keeps the two equal)."""
    from fiftyone_ram.models.registry import DEFAULT_VARIANT, default_cfgs
    from fiftyone_ram.upstream import UPSTREAM_REPO

    upstream = f"https://github.com/{UPSTREAM_REPO}"
    models = []
    first = default_cfgs[DEFAULT_VARIANT]  # listed first: the model the docs and forms suggest
    for cfg in [first, *(c for c in default_cfgs.values() if c is not first)]:
        tags = list(_TAGS)
        if cfg.captions:
            tags.insert(-1, "captioning")
        models.append({
            "base_name": cfg.zoo_name, "base_filename": cfg.weights.filename, "description": cfg.description,
            "author": _AUTHOR, "license": "Apache-2.0", "source": upstream, "url": cfg.weights.page,
            "size_bytes": cfg.weights.size or cfg.weights.approx_size, "date_added": _DATE_ADDED, "tags": tags,
            "requirements": _REQUIREMENTS,
        })
    models.append({
        "base_name": CUSTOM, "base_filename": _CUSTOM_FILENAME,
        "description": "Your own RAM, RAM++ or Tag2Text checkpoint (fine-tuned, converted or a different size): "
                       "nothing is downloaded; pass checkpoint_path=, config= (architecture JSON) or model= (a "
                       "released variant), and family= when the config does not name it. Same outputs as the "
                       "released models.",
        "author": f"{_AUTHOR} (architecture)", "license": "Apache-2.0", "source": upstream, "size_bytes": 0,
        "date_added": _DATE_ADDED, "tags": list(_TAGS), "requirements": _REQUIREMENTS,
    })
    return {"name": SOURCE_NAME, "url": SOURCE_URL, "models": models}


if __name__ == "__main__":  # python -m fiftyone_ram.fiftyone.zoo [PATH]: (re)write the manifest
    import json
    import sys

    text = json.dumps(build_manifest(), indent=2, ensure_ascii=False) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
