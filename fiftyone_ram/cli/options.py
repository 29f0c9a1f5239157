"""The click options every tagger-loading command shares, and the tagger they describe.

A leaf of the CLI package: the command modules import it, it imports none of them, so each command module
can be imported on its own. Model names come from the variant registry, never typed out here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fiftyone_ram.hardware import PRECISION_CHOICES, PRECISION_ENV
from fiftyone_ram.models.config import FAMILIES
from fiftyone_ram.models.registry import DEFAULT_VARIANT, default_cfgs, list_variants

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A user error as the command line shows it: ``Error: <one line>``, exit status 2 (1 is kept for "some
    images could not be read")."""

    exit_code = 2


class ThresholdType(click.ParamType):
    """A threshold option: a finite number with 0 <= t <= 1 (``nan``, ``1.5`` and ``-1`` are refused)."""

    name = "threshold"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from fiftyone_ram.decision import THRESHOLD_RULE

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number ({THRESHOLD_RULE})", param, ctx)
        if not (number == number and 0.0 <= number <= 1.0):  # number == number: not NaN
            self.fail(f"{value!r} is not a valid threshold ({THRESHOLD_RULE})", param, ctx)
        return number


#: For every option that is a threshold or another probability (a target precision).
THRESHOLD = ThresholdType()

#: What ``--model`` accepts: a released variant, or a family whose sizes come from ``--config``.
MODEL_CHOICES = (*default_cfgs, *FAMILIES)
#: What ``--captioner`` accepts: the released Tag2Text variants, or the family with ``--captioner-config``.
CAPTIONER_CHOICES = (*list_variants("tag2text"), "tag2text")

model_option = click.option(
    "--model", "model_name", type=click.Choice(MODEL_CHOICES), default=DEFAULT_VARIANT, show_default=True,
    help=f"Released model, or a family ({', '.join(FAMILIES)}) with --config.")
checkpoint_option = click.option("--checkpoint", type=click.Path(), help="Upstream checkpoint (.pth), or a model "
                                 "folder written by fine-tuning (then --model and --config are not needed).")
config_option = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                             help="JSON architecture config (may name the family).")
tag_list_option = click.option("--tag-list", type=click.Path(exists=True, dir_okay=False),
                               help="The model's tag list, one tag per line.")
tag_list_chinese_option = click.option("--tag-list-chinese", type=click.Path(exists=True, dir_okay=False))
thresholds_option = click.option("--thresholds", type=click.Path(exists=True, dir_okay=False),
                                 help="Per-class thresholds, one per line (upstream's format).")
device_option = click.option("--device", default=None,
                             help="cpu, cuda, cuda:1, ... (default: cuda when available).")
precision_option = click.option(
    "--precision", type=click.Choice(PRECISION_CHOICES), default=None,
    help=f"Numeric precision; auto: bf16 on GPUs and bf16-capable CPUs, int8 on other x86 CPUs, else fp32 "
         f"(default: ${PRECISION_ENV}, else auto).")

_TAGGER_OPTIONS = (model_option, checkpoint_option, config_option, tag_list_option, tag_list_chinese_option,
                   thresholds_option, device_option, precision_option)


def tagger_options(command: F) -> F:
    """Options that choose and configure a tagger (``model_name``, ``checkpoint``, ``config_path``,
    ``tag_list``, ``tag_list_chinese``, ``thresholds``, ``device``, ``precision``), in that order in ``--help``."""
    for option in reversed(_TAGGER_OPTIONS):
        command = option(command)
    return command


def load_tagger_from_options(model_name: str, checkpoint: str | None, config_path: str | None,
                             tag_list: str | None, tag_list_chinese: str | None, thresholds: str | None,
                             device: str | None, batch_size: int = 4, precision: str | None = None,
                             vocabulary: Any = None) -> Tagger:
    """The tagger :func:`tagger_options` describe. ``vocabulary``: a ``VocabularySpec`` or its options
    (tags, descriptions, keep_builtin, ...). A name, file or download that cannot give a model raises a
    :class:`~fiftyone_ram.errors.UserError`, which the command line shows as one line (exit status 2)."""
    from fiftyone_ram import load_tagger

    family = model_name if model_name in FAMILIES else None
    return load_tagger(config_path or model_name, checkpoint, family=family, tag_list=tag_list,
                       tag_list_chinese=tag_list_chinese, thresholds=thresholds, device=device,
                       batch_size=batch_size, precision=precision, vocabulary=vocabulary)


_ENGINE_OPTIONS = (
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="Run the models here, or on Ray Data (a local cluster or --ray-address); tag: with --dataset."),
    click.option("--ray-address", default=None,
                 help="With --engine ray: the cluster (auto, ray://host:10001, host:6379); default: start a "
                      "local one."),
    click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                 help="With --engine ray: model workers (one per GPU, or CPU workers)."),
    click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="With --engine ray: GPUs each worker reserves (fractions share a GPU)."),
)


def engine_options(command: F) -> F:
    """Options that choose where the model runs over a dataset (``engine``, ``ray_address``, ``workers``,
    ``gpus_per_worker``); :func:`ray_options_from` turns them into the engine's settings."""
    for option in reversed(_ENGINE_OPTIONS):
        command = option(command)
    return command


def ray_options_from(engine: str, ray_address: str | None, workers: int, gpus_per_worker: float):
    """The Ray engine's settings, or None for the local engine (Ray Data is only imported for ``ray``)."""
    if engine != "ray":
        return None
    from fiftyone_ram.driver.ray_executor import RayOptions, check_engine

    check_engine(engine)
    return RayOptions(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker)
