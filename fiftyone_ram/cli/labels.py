"""``fiftyone-ram parse-captions``: captions in, tags of a label system out (RAM's by default)."""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli.options import CommandError


@click.command("parse-captions")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--tag-list",
    type=click.Path(exists=True, dir_okay=False),
    help="Tag list (one tag per line, synonyms after '|') or saved label system (.json). "
    "Default: RAM's 4,585 tags.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each line's tags as a JSON list.")
def parse_captions(file, tag_list: str | None, as_json: bool) -> None:
    """Parse FILE (one caption per line, '-' for stdin) into tags, one output line per input line.

    Tags come in order of appearance; negated phrases ("no people") give none.
    """
    from fiftyone_ram.labels.caption_parser import load_parser
    from fiftyone_ram.labels.wordnet import WordNetUnavailableError

    try:
        parser = load_parser(tag_list)
    except (WordNetUnavailableError, RuntimeError, OSError, ValueError) as error:
        raise CommandError(str(error)) from error
    for line in file:
        tags = parser.tags(line.rstrip("\n"))
        click.echo(json.dumps(tags, ensure_ascii=False) if as_json else ", ".join(tags))
