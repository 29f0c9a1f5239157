"""Label queries of new tags from CLIP text embeddings, with upstream's formulas (spec §4.2).

RAM: prompt ensemble — each of the tag's template texts is embedded and L2-normalised, the unit vectors
are averaged and the mean is L2-normalised again: one (D,) query per tag.
RAM++: the unit embeddings of the tag's descriptions, not averaged: (K, D) per tag; without descriptions,
the unit embeddings of its template texts play that part (K = number of templates).
Descriptions are truncated to CLIP's context as upstream does; template texts are not (too long → error).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fiftyone_ram.vocabulary.cache import EmbeddingCache, entry_key
from fiftyone_ram.vocabulary.templates import prompt_texts, resolve_templates
from fiftyone_ram.vocabulary.text_encoder import TextEncoder


def unit_rows(groups: Sequence[Sequence[str]], encoder: TextEncoder, *, truncate: bool,
              cache: EmbeddingCache | None = None) -> list[np.ndarray]:
    """Per group of texts, their unit embeddings (len(group), D), from the cache where present.

    The encoder is touched only for the groups that miss (all misses go through it in shared batches).
    """
    if cache is None:
        keys, found = [], [None] * len(groups)
    else:
        keys = [entry_key(encoder.identity, group, truncate=truncate) for group in groups]
        found = [cache.load(key, len(group)) for key, group in zip(keys, groups)]
    missing = [i for i, rows in enumerate(found) if rows is None]
    if missing:
        texts = [text for i in missing for text in groups[i]]
        encoded = encoder.encode(texts, truncate=truncate)
        start = 0
        for i in missing:
            found[i] = encoded[start:start + len(groups[i])]
            start += len(groups[i])
            if cache is not None:
                cache.save(keys[i], found[i])
    return found


def prompt_ensemble(rows: np.ndarray) -> np.ndarray:
    """Mean of unit vectors, re-normalised: RAM's query for one tag."""
    mean = rows.astype(np.float32).mean(axis=0)
    return mean / np.linalg.norm(mean)


def template_rows(names: Sequence[str], encoder: TextEncoder, *, templates: Sequence[str] | None = None,
                  cache: EmbeddingCache | None = None) -> list[np.ndarray]:
    """Unit embeddings of each name's template texts: (T, D) per name (``cache`` None: no caching)."""
    chosen = resolve_templates(templates)
    return unit_rows([prompt_texts(name, chosen) for name in names], encoder, truncate=False, cache=cache)


def ram_queries(names: Sequence[str], encoder: TextEncoder, *, templates: Sequence[str] | None = None,
                cache: EmbeddingCache | None = None) -> np.ndarray:
    """RAM's open-set label queries (N, D): the prompt ensemble of every name."""
    rows = template_rows(names, encoder, templates=templates, cache=cache)
    return np.stack([prompt_ensemble(r) for r in rows])


def description_rows(descriptions: Sequence[Sequence[str]], encoder: TextEncoder, *,
                     cache: EmbeddingCache | None = None) -> list[np.ndarray]:
    """RAM++'s open-set queries: the unit embeddings of each tag's descriptions, (K_i, D) per tag."""
    return unit_rows(descriptions, encoder, truncate=True, cache=cache)
