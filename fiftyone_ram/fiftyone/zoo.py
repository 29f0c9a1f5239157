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

#: zoo base name -> released variant of ``fiftyone_ram.models.config.VARIANTS``
RELEASED = {
    "ram-plus-swin-large-14m": "ram_plus_swin_large_14m",
    "ram-swin-large-14m": "ram_swin_large_14m",
    "tag2text-swin-14m": "tag2text_swin_14m",
}
CUSTOM = "recognize-anything-custom"
SOURCE_NAME = "fiftyone-ram/recognize-anything"


def base_name(model_name: str) -> str:
    """``name@version`` or ``source/name`` to the manifest's base name."""
    return model_name.split("@", 1)[0].rsplit("/", 1)[-1]


def download_model(model_name: str, model_path: str) -> None:
    """Put the released weights at ``model_path`` (a link to fiftyone-ram's own cache, so the CLI and the
    zoo share one copy); for the custom entry write the small file that marks it as present."""
    name = base_name(model_name)
    if name == CUSTOM:
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
    """A :class:`~fiftyone_ram.fiftyone.model.RamModel`; ``kwargs`` are its config keys (``checkpoint_path``,
    ``config``, ``family``, ``thresholds``, ``confidence_thresh``/``threshold``, ``classes``, ``language``,
    ``device``, ``caption``, and the vocabulary: ``tags``, ``descriptions``, ``tag_thresholds``...)."""
    from fiftyone_ram.fiftyone.model import load_model as build

    name = base_name(model_name)
    if name == CUSTOM:
        if not kwargs.get("checkpoint_path"):
            raise ValueError(f"{CUSTOM} needs checkpoint_path= (and config= or model=, family= when the config "
                             f"does not name it)")
        if not kwargs.get("config") and not kwargs.get("model"):
            raise ValueError(f"{CUSTOM} needs config= (an architecture JSON) or model= (a released variant)")
        return build(**kwargs)
    kwargs.setdefault("model", _variant(name))
    if not kwargs.get("checkpoint_path"):
        kwargs["checkpoint_path"] = model_path
    return build(**kwargs)


def _variant(name: str) -> str:
    try:
        return RELEASED[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; this source has {', '.join([*RELEASED, CUSTOM])}") from None


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
"""


def resolve_input(model_name: str, ctx):
    """The tagger options for ``@voxel51/zoo``'s "Apply zoo model" form (nested there as ``remote_params``)."""
    import fiftyone.operators.types as types

    from fiftyone_ram.fiftyone.forms import add_tagger_options

    name = base_name(model_name)
    family = None if name == CUSTOM else _family(name)
    inputs = types.Object()
    values = ctx.params.get("remote_params") or {}
    add_tagger_options(inputs, values, family=family, custom=name == CUSTOM)
    return types.Property(inputs)


def parse_parameters(model_name: str, ctx, params: dict) -> None:
    """Form values to ``load_model`` keywords, in place."""
    from fiftyone_ram.fiftyone.forms import tagger_kwargs

    kwargs = tagger_kwargs(params)
    params.clear()
    params.update(kwargs)


def _family(name: str) -> str:
    from fiftyone_ram.models.config import VARIANTS

    return VARIANTS[_variant(name)].family
