"""The ``fiftyone-ram`` command line: tag images, manage models, evaluate and clean tags."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fiftyone-ram")
def main() -> None:
    """Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne."""


def _register_subcommands() -> None:
    """Commands that live next to the code they drive."""


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main()
