"""What a tagger is asked: tag names, where each tag's label query comes from, and its threshold.

A tag is either *built-in* (one of the base tag list's: its query is the model's, selected by index, so a
subset needs no text encoder and scores exactly as in the full vocabulary) or *embedded* (a new tag, or a
RAM++ tag given descriptions: its query is built from CLIP text embeddings as upstream's open set does).
A vocabulary is built from facts only (a family, the base tag list and its thresholds); the model classes
put it to use (``with_label_queries``, ``select_classes``), ``Tagger.with_vocabulary`` joins the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.models.config import FAMILIES
from fiftyone_ram.models.registry import tag_list_signature
from fiftyone_ram.vocabulary.cache import EmbeddingCache
from fiftyone_ram.vocabulary.embeddings import description_rows, ram_queries, template_rows
from fiftyone_ram.vocabulary.sources import (VocabularyError, read_descriptions,
                                             read_tags)
from fiftyone_ram.vocabulary.spec import OPEN_SET_THRESHOLD, VocabularySpec
from fiftyone_ram.vocabulary.text_encoder import TextEncoder, resolve_text_encoder



@dataclass(frozen=True, eq=False)
class Vocabulary:
    """``builtin_index[c]`` is tag c's position in the tag list it was built against, or -1 when embedded;
    ``embedded`` holds, in order, each embedded tag's query rows: (1, D) for RAM (its prompt ensemble),
    (K, D) unit description/template embeddings for RAM++."""

    names: tuple[str, ...]
    thresholds: np.ndarray
    builtin_index: np.ndarray
    embedded: tuple[np.ndarray, ...]
    family: str
    base_signature: str
    spec: VocabularySpec | None = None  # what it was built from (how other processes build it again)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_builtin_only(self) -> bool:
        return not self.embedded

    @property
    def embedded_names(self) -> list[str]:
        return [name for name, i in zip(self.names, self.builtin_index) if i < 0]

    def label_queries(self, builtin: torch.Tensor, builtin_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries (C, K, D) from the built-in ones (C0, K0, D), and a (C, K) mask of real rows, or None when
        every tag has all K rows (tags with fewer rows are zero-padded; padding must be masked out)."""
        if builtin.dim() != 3:
            raise ValueError("built-in queries must be (classes, rows, dim)")
        index = torch.as_tensor(self.builtin_index, device=builtin.device)
        is_builtin = index >= 0
        counts = {int(rows.shape[0]) for rows in self.embedded}
        if bool(is_builtin.any()):
            counts.add(builtin.shape[1])
        for rows in self.embedded:
            if rows.shape[1] != builtin.shape[2]:
                raise VocabularyError(f"embeddings of width {rows.shape[1]} cannot replace this model's label "
                                      f"queries of width {builtin.shape[2]}: use a text encoder of the model's CLIP "
                                      f"width")
        width = max(counts)
        uniform = len(counts) == 1 and (builtin_mask is None or not bool(is_builtin.any()))
        queries = builtin.new_zeros(len(self.names), width, builtin.shape[2])
        mask = torch.zeros(len(self.names), width, dtype=torch.bool, device=builtin.device)
        positions = torch.nonzero(is_builtin).flatten()
        if len(positions):
            queries[positions, :builtin.shape[1]] = builtin[index[positions]]
            mask[positions, :builtin.shape[1]] = True if builtin_mask is None else builtin_mask[index[positions]]
        for position, rows in zip(torch.nonzero(~is_builtin).flatten().tolist(), self.embedded):
            queries[position, :rows.shape[0]] = torch.as_tensor(rows, dtype=builtin.dtype, device=builtin.device)
            mask[position, :rows.shape[0]] = True
        return queries, (None if uniform else mask)


def build_vocabulary(family: str | Any, tag_list: Sequence[str] | None = None,
                     thresholds: Sequence[float] | np.ndarray | None = None, spec: VocabularySpec | None = None, *,
                     cache: EmbeddingCache | str | Path | bool = True, device: str | torch.device = "cpu",
                     **options: Any) -> Vocabulary:
    """A vocabulary over a base of tags: the model ``family`` (``ram``, ``ram_plus``, ``tag2text``), the
    ``tag_list`` the model answers now and its ``thresholds``. For convenience a loaded tagger may stand for
    all three (and the device): ``build_vocabulary(tagger, tags=...)``; apply it with ``tagger.with_vocabulary``.

    What is asked: ``spec``, or its fields as keywords (:class:`~fiftyone_ram.vocabulary.spec.VocabularySpec`).
    Names found in the base tag list use the model's own queries; the others are embedded: RAM with upstream's
    prompt ensemble, RAM++ from their descriptions (upstream's JSON layout) or else from the templates. A RAM++
    tag with descriptions is always embedded from them. Embedded tags get the spec's ``new_tag_threshold``
    (default: upstream's open-set 0.5); built-in tags keep the base thresholds. The text encoder (on
    ``device``) runs only for embeddings not in ``cache`` yet.
    """
    if spec is None:
        spec = VocabularySpec(**options)
    elif options:
        raise TypeError("give the vocabulary as a spec or as keywords, not both")
    tags, descriptions, keep_builtin = spec.tags, spec.descriptions, spec.keep_builtin
    new_tag_threshold, tag_thresholds = spec.new_tag_threshold, spec.tag_thresholds
    text_encoder, templates = spec.text_encoder, spec.templates
    if not isinstance(family, str):  # duck-typed: a Tagger, or anything with the same three facts
        base = family
        family, tag_list, thresholds = base.family, base.tag_list, base.thresholds
        device = getattr(base, "device", device)
    if family not in FAMILIES:
        raise VocabularyError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    if tag_list is None or thresholds is None:
        raise TypeError("build_vocabulary needs the base tag list and its thresholds (or a tagger)")
    tag_list = list(tag_list)
    if new_tag_threshold is not None:
        new_tag_threshold = check_threshold(new_tag_threshold, "new_tag_threshold (CLI: --new-tag-threshold)")
    tag_thresholds = {name: check_threshold(value, f"tag_thresholds[{name!r}]")
                      for name, value in (tag_thresholds or {}).items()}
    base_limits = np.asarray(thresholds, dtype=np.float32)
    if base_limits.shape != (len(tag_list),):
        raise VocabularyError(f"{base_limits.size} thresholds given for a tag list of {len(tag_list)} tags")
    described = read_descriptions(descriptions) if descriptions is not None else {}
    if described and family != "ram_plus":
        instead = "prompt templates: pass the tag names as tags=" if family == "ram" else "its own tags only"
        raise VocabularyError(f"descriptions are RAM++'s way to define tags; {family} uses {instead}")
    requested = read_tags(tags) if tags is not None else list(described) if described else None
    chosen = _choose(tag_list, requested, keep_builtin or requested is None)
    if not chosen:
        raise VocabularyError("the vocabulary has no tags")
    names = [name for name, _ in chosen]
    index = np.asarray([-1 if name in described else i for name, i in chosen], dtype=np.int64)
    new = [name for name, i in zip(names, index) if i < 0]
    if new and family == "tag2text":
        shown = ", ".join(repr(n) for n in new[:5]) + (" ..." if len(new) > 5 else "")
        raise VocabularyError(f"Tag2Text's label queries are learned, one per tag of its own list, so it cannot "
                              f"answer new tags ({shown}); use RAM or RAM++ for those, or a subset of Tag2Text's tags")
    if new:
        encoder = resolve_text_encoder(text_encoder, device=device)
        embedded = _embed(new, family, described, encoder, templates, _cache(cache))
    else:
        embedded = []
    limits = np.where(index >= 0, base_limits[np.maximum(index, 0)],
                      OPEN_SET_THRESHOLD if new_tag_threshold is None else new_tag_threshold).astype(np.float32)
    for name, value in (tag_thresholds or {}).items():
        positions = [i for i, n in enumerate(names) if n == name]
        if not positions:
            raise VocabularyError(f"tag_thresholds names {name!r}, which is not in the vocabulary")
        limits[positions] = float(value)
    return Vocabulary(tuple(names), limits, index, tuple(embedded), family, tag_list_signature(tag_list), spec)


def _choose(tag_list: Sequence[str], requested: list[str] | None, keep_builtin: bool) -> list[tuple[str, int]]:
    """(name, position in the tag list or -1). Kept built-in tags go by position, as lists may repeat a name
    (Tag2Text's homographs); requested names by their first occurrence."""
    known = {name: i for i, name in reversed(list(enumerate(tag_list)))}
    builtin = list(zip(tag_list, range(len(tag_list)))) if keep_builtin else []
    return builtin + [(name, known.get(name, -1)) for name in requested or []
                      if not (keep_builtin and name in known)]


def _embed(names: list[str], family: str, described: dict[str, list[str]], encoder: TextEncoder,
           templates: Sequence[str] | None, cache: EmbeddingCache | None) -> list[np.ndarray]:
    if family == "ram":
        return [row[None, :] for row in ram_queries(names, encoder, templates=templates, cache=cache)]
    with_text = [n for n in names if n in described]
    without = [n for n in names if n not in described]
    rows = dict(zip(with_text, description_rows([described[n] for n in with_text], encoder, cache=cache)))
    if without:
        rows.update(zip(without, template_rows(without, encoder, templates=templates, cache=cache)))
    return [rows[n] for n in names]


def _cache(cache: EmbeddingCache | str | Path | bool) -> EmbeddingCache | None:
    if cache is True:
        return EmbeddingCache()
    if cache is False or cache is None:
        return None
    return cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
