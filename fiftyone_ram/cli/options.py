"""The options that choose a tagger, shared by every command that loads one, and the spec they describe.

A leaf of the CLI package: the command modules import it, it imports none of them, so each command module
can be imported on its own. Model names come from the variant registry, precisions from the hardware module,
the batch size from the tagger spec: nothing is typed out here. The options of a job (tagging, cleaning...)
come from the job's settings (:mod:`fiftyone_ram.cli.settings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fiftyone_ram.cli.settings import THRESHOLD_TYPE  # noqa: F401  (re-exported for the command modules)
from fiftyone_ram.hardware import PRECISION_CHOICES, PRECISION_ENV
from fiftyone_ram.models.config import FAMILIES
from fiftyone_ram.models.registry import DEFAULT_VARIANT, default_cfgs, list_variants

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger
    from fiftyone_ram.tagger_spec import TaggerSpec

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A user error as the command line shows it: ``Error: <one line>``, exit status 2 (1 is kept for "some
    images could not be read")."""

    exit_code = 2


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
tag_list_chinese_option = click.option("--tag-list-chinese", type=click.Path(exists=True, dir_okay=False),
                                       help="The Chinese names of the model's tags, one per line.")
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
#: The parameter names :func:`tagger_options` adds.
TAGGER_PARAMS = ("model_name", "checkpoint", "config_path", "tag_list", "tag_list_chinese", "thresholds", "device",
                 "precision")


def tagger_options(command: F) -> F:
    """Options that choose and configure a tagger (``model_name``, ``checkpoint``, ``config_path``,
    ``tag_list``, ``tag_list_chinese``, ``thresholds``, ``device``, ``precision``), in that order in ``--help``."""
    for option in reversed(_TAGGER_OPTIONS):
        command = option(command)
    return command


def tagger_spec_from(params: Mapping[str, Any], **changes: Any) -> TaggerSpec:
    """The :class:`~fiftyone_ram.tagger_spec.TaggerSpec` the :func:`tagger_options` in ``params`` describe (the
    command's other options, such as the vocabulary or the batch size, in ``changes``)."""
    from fiftyone_ram.tagger_spec import TaggerSpec

    model_name = params.get("model_name") or DEFAULT_VARIANT
    family = model_name if model_name in FAMILIES else None
    fields = {"model": params.get("config_path") or model_name, "checkpoint": params.get("checkpoint"),
              "family": family, "tag_list": params.get("tag_list"), "tag_list_chinese": params.get("tag_list_chinese"),
              "thresholds": params.get("thresholds"), "device": params.get("device"),
              "precision": params.get("precision")}
    return TaggerSpec(**{**fields, **changes})


def load_tagger_from(params: Mapping[str, Any], **changes: Any) -> Tagger:
    """The tagger :func:`tagger_options` describe. A name, file or download that cannot give a model raises a
    :class:`~fiftyone_ram.errors.UserError`, which the command line shows as one line (exit status 2)."""
    from fiftyone_ram.tagger import load_tagger

    return load_tagger(tagger_spec_from(params, **changes))


def collection(dataset_name: str, saved_view: str | None = None):
    """The dataset (or one of its saved views) a command works on, or one line saying it does not exist."""
    import fiftyone as fo

    if not fo.dataset_exists(dataset_name):
        raise CommandError(f"no FiftyOne dataset named {dataset_name!r}")
    dataset = fo.load_dataset(dataset_name)
    if saved_view is None:
        return dataset
    if not dataset.has_saved_view(saved_view):
        raise CommandError(f"dataset {dataset_name!r} has no saved view {saved_view!r}")
    return dataset.load_saved_view(saved_view)
