"""The ``fiftyone-ram`` command line: tag images, manage models, evaluate, parse captions, generate and clean tags,
fine-tune.

One module per command group; :mod:`fiftyone_ram.cli.options` (the shared tagger options) is the leaf they all
import. This package only assembles them into :func:`main`, the console script. The submodules stay bound
under their own names here (``fiftyone_ram.cli.tag`` is the module; its command is ``tag.tag``).
"""

from __future__ import annotations

import click

from fiftyone_ram.cli import engine, evaluate, finetune, labels, models, tag


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fiftyone-ram")
def main() -> None:
    """Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne."""


for _command in (tag.tag, evaluate.evaluate, evaluate.benchmark, models.models, labels.parse_captions,
                 engine.generate, engine.clean, finetune.finetune):
    main.add_command(_command)
del _command

__all__ = ["main"]
