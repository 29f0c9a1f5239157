"""The README and ``docs/`` as a newcomer meets them: short, each thing said once, no unfilled placeholders,
no dead links, and a models table that is the variant registry's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TOPICS = ("tagging", "vocabularies", "labels", "evaluation", "engine", "app", "benchmarks", "development")
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_BYTES = 16_000

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# What an unfilled template slot looks like (OUTLIER_TABLE, BENCH_FIGURE) and the usual markers of
# unfinished text. Code (fenced blocks and inline spans) is exempt: environment variables live there.
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b(?:TODO|TBD|FIXME|XXX)\b")
# Swin sizes by (embed_dim, depths), as the Swin paper and timm name them.
_SWIN_NAMES = {(96, (2, 2, 6, 2)): "Swin-T", (96, (2, 2, 18, 2)): "Swin-S", (128, (2, 2, 18, 2)): "Swin-B",
               (192, (2, 2, 18, 2)): "Swin-L"}
_FAMILY_NAMES = {"ram": "RAM", "ram_plus": "RAM++", "tag2text": "Tag2Text"}


def outside_fences(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with inline code removed."""
    return [(number, _INLINE_CODE.sub("", line)) for number, line in outside_fences(path)]


def headings(path: Path) -> list[str]:
    """Heading texts outside code, as written (inline code kept: it is part of the name)."""
    return [m.group(2) for _, line in outside_fences(path) if (m := _HEADING.match(line))]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not '-' and '_'), spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of the Markdown links outside code."""
    return [(number, target) for number, line in prose_lines(path) for target in _LINK.findall(line)]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_topic_has_its_page_and_the_readme_links_it():
    readme_targets = {target.split("#")[0] for _, target in links(README)}
    for topic in TOPICS:
        page = DOCS / f"{topic}.md"
        assert page.is_file(), f"missing {page.relative_to(ROOT)}"
        assert f"docs/{topic}.md" in readme_targets, f"the README does not link docs/{topic}.md"


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, f"README.md is {size:,} bytes; keep it under {MAX_README_BYTES:,} (move detail to docs/)"


def test_the_readme_keeps_the_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("bash scripts/setup.sh", "python3 -m pytest -q -n 2 --dist loadgroup tests"):
        assert command in text and command in ci, command


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_heading_repeats_within_a_page(page):
    seen: dict[str, int] = {}
    for heading in headings(page):
        seen[heading.lower()] = seen.get(heading.lower(), 0) + 1
    assert not [h for h, n in seen.items() if n > 1], f"repeated headings in {_page_id(page)}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_placeholder_tokens(page):
    found = [(number, m.group(0)) for number, line in prose_lines(page) for m in _PLACEHOLDER.finditer(line)]
    assert not found, f"{_page_id(page)}: placeholder-looking tokens outside code: {found}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not checked offline
            continue
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append((number, target, "no such file"))
        elif fragment and destination.suffix == ".md" and fragment not in {anchor(h) for h in headings(destination)}:
            broken.append((number, target, "no such heading"))
    assert not broken, f"{_page_id(page)}: {broken}"


def test_no_pasted_readme_sections_remain():
    leftovers = [p.relative_to(ROOT) for p in ROOT.rglob("README_SECTION.md") if ".git" not in p.parts]
    assert not leftovers, f"their content belongs in docs/: {leftovers}"


def _models_table() -> list[dict[str, str]]:
    """The README table whose header starts with 'name | zoo name', one dict per row."""
    rows: list[list[str]] = []
    for _, line in outside_fences(README):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            if rows:
                break
        elif rows or cells[:2] == ["name", "zoo name"]:
            rows.append(cells)
    assert rows, "the README has no models table (header 'name | zoo name | ...')"
    header, _, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def test_the_models_table_is_the_registry():
    from fiftyone_ram.models.registry import default_cfgs

    table = _models_table()
    names = [row["name"].strip("`") for row in table]
    assert sorted(names) == sorted(default_cfgs), "the models table must list exactly the registered variants"
    for row in table:
        cfg = default_cfgs[row["name"].strip("`")]
        arch = cfg.architecture
        assert row["zoo name"] == f"`{cfg.zoo_name}`"
        assert row["family"] == _FAMILY_NAMES[cfg.family]
        assert row["backbone"] == f"{_SWIN_NAMES[(arch.swin.embed_dim, arch.swin.depths)]} {arch.image_size}"
        assert row["tags"].startswith(f"{cfg.labels.num_classes:,}"), row["tags"]
        assert ("caption" in row["tags"]) == cfg.captions
        size = cfg.weights.size or cfg.weights.approx_size
        assert row["weights"].startswith(f"{size / 1e9:.2f} GB"), row["weights"]
        assert ("approximate" in row["weights"]) == (cfg.weights.size is None), row["weights"]
