"""Upstream's open-set prompts: its 63 templates and the rules that turn a tag name into template texts.

The template strings are not copied into this project: they are read from upstream's
``ram/utils/openset_utils.py`` at the pinned commit (downloaded once through :mod:`fiftyone_ram.assets`,
sha256-checked) by parsing the file with :mod:`ast`, never importing it. Every API that uses templates also
accepts an explicit list, so nothing needs the download when templates are given.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

UPSTREAM_SOURCE = "openset_utils.py"
#: The assignment in upstream's file that holds the prompt ensemble of RAM's open-set embeddings.
TEMPLATES_VARIABLE = "multiple_templates"
#: Upstream prefixes this to every formatted prompt that starts with "a" or "the".
SENTENCE_PREFIX = "This is "


def templates_from_source(source: str, variable: str = TEMPLATES_VARIABLE) -> tuple[str, ...]:
    """The list of strings assigned to ``variable`` at the top level of a Python source text."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            value = ast.literal_eval(node.value)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{variable} is not a non-empty list of strings")
            return tuple(check_templates(value))
    raise ValueError(f"no top-level assignment to {variable!r} in the source")


@lru_cache(maxsize=1)
def upstream_templates() -> tuple[str, ...]:
    """Upstream's 63 open-set templates (downloaded on first use, then read from the cache)."""
    from fiftyone_ram.assets import upstream_file

    path = upstream_file(UPSTREAM_SOURCE)
    return templates_from_source(Path(path).read_text(encoding="utf-8"))


def resolve_templates(templates: Sequence[str] | str | Path | None) -> tuple[str, ...]:
    """Explicit templates as given (a list, or a file with one per line; checked), else upstream's."""
    if templates is None:
        return upstream_templates()
    if isinstance(templates, (str, Path)):
        from fiftyone_ram.tag_files import read_text_file

        templates = [line for line in read_text_file(Path(templates), "template file").splitlines() if line.strip()]
    return tuple(check_templates(templates))


def check_templates(templates: Sequence[str]) -> list[str]:
    """Each template must hold exactly one ``{}`` for the name (``{article}`` is optional)."""
    out = list(templates)
    if not out:
        raise ValueError("no prompt templates given")
    for template in out:
        try:
            template.format("x", article="a")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"bad prompt template {template!r}: only {{}} and {{article}} may appear") from exc
        if template.count("{}") != 1:
            raise ValueError(f"prompt template {template!r} must contain exactly one {{}} for the tag name")
    return out


def article(name: str) -> str:
    """Upstream's rule, on the raw name and case-sensitive: "an" before a lower-case vowel, else "a"."""
    return "an" if name[:1] in ("a", "e", "i", "o", "u") else "a"


def prompt_name(name: str) -> str:
    """The name as upstream puts it in a prompt: "_" → " ", "/" → " or ", lower case, trailing dots dropped."""
    return name.replace("_", " ").replace("/", " or ").lower().rstrip(".")


def prompt_texts(name: str, templates: Sequence[str]) -> list[str]:
    """The texts that embed one tag: every template filled in, then "This is " before texts starting with
    "a" or "the" (upstream's test is on the first characters, so "an ..." and "another ..." get it too)."""
    if not name.strip():
        raise ValueError("a tag name is empty")
    filled = [t.format(prompt_name(name), article=article(name)) for t in templates]
    return [SENTENCE_PREFIX + text if text.startswith(("a", "the")) else text for text in filled]
