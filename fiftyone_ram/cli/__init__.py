"""The ``fiftyone-ram`` command line: tag images, manage models, evaluate, compare taggers, parse captions, generate
and clean tags, fine-tune, run the whole paradigm as a pipeline.

One module per command group; :mod:`fiftyone_ram.cli.options` (the shared tagger options) is the leaf they all
import. This package only assembles them into :func:`main`, the console script. The submodules stay bound
under their own names here (``fiftyone_ram.cli.tag`` is the module; its command is ``tag.tag``).

Exit status: 0 when everything worked, 1 when some images could not be read (the rest was done), 2 for an
error the user can fix (:class:`fiftyone_ram.errors.UserError`, a bad option, a missing file): one line
naming the file, field or option, without a traceback unless ``--debug`` or ``FIFTYONE_RAM_DEBUG=1``.
"""

from __future__ import annotations

import os
import traceback

import click

from fiftyone_ram.cli import compare, engine, evaluate, export, finetune, labels, models, pipeline, tag
from fiftyone_ram.cli.options import CommandError
from fiftyone_ram.errors import user_message

DEBUG_VARIABLE = "FIFTYONE_RAM_DEBUG"


def _debugging(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")



class _Main(click.Group):
    """The group that turns user errors, and a database that cannot be reached, into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise  # a bug: keep the traceback
            if _debugging(ctx):
                traceback.print_exc()
                ctx.exit(2)
            raise CommandError(message) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fiftyone-ram")
@click.option("--debug", is_flag=True, help=f"Show the traceback of an error (also: {DEBUG_VARIABLE}=1).")
def main(debug: bool) -> None:
    """Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne."""


for _command in (tag.tag, evaluate.evaluate, evaluate.benchmark, compare.compare, models.models, labels.parse_captions,
                 engine.generate, engine.clean, finetune.finetune, pipeline.pipeline):
    main.add_command(_command)
del _command
main.add_command(export.export)

__all__ = ["main"]
