"""The record of a tagging run, kept with the dataset as FiftyOne keeps its runs.

Each label field written by :func:`fiftyone_ram.fiftyone.tag_samples` has one run (FiftyOne's run machinery:
``dataset.list_runs(method="fiftyone_ram_tag")``, ``dataset.get_run_info("ram_tag_<field>")``) whose config
holds what decides the labels: the model and architecture, the checkpoint's identity (its content
fingerprint, so a copy elsewhere is the same checkpoint), the thresholds (a hash of their values), the
vocabulary, the language, captions, logits and the precision; and the run's state (``running``,
``interrupted``, ``complete``), whether it overwrites, and the ids that scope its sample claims
(:mod:`fiftyone_ram.driver.claims`).

A run is resumed only with the same settings: labels written with a threshold of 0.9 are not "already
tagged" for a run at 0.5. :func:`differences` says what differs, in the words of the options that set it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

#: The settings compared on resume, and the option that sets each (CLI / Python).
COMPARED = {
    "model": "--model / --config",
    "checkpoint": "--checkpoint",
    "thresholds": "--threshold / --thresholds",
    "vocabulary": "--tag-list / --tags / --descriptions / --keep-builtin",
    "classes": "classes",
    "language": "--lang",
    "caption": "--caption / --no-caption",
    "store_logits": "store_logits",
    "precision": "--precision",
}


def _digest(value: Any) -> str:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value).tobytes() + str(value.dtype).encode()
    elif isinstance(value, bytes):
        data = value
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()[:16]


def tagging_settings(model: Any, *, confidence_thresh: float | None = None,
                     store_logits: bool = False) -> dict[str, Any]:
    """What decides the labels a :class:`~fiftyone_ram.fiftyone.model.RamModel` writes, as plain values
    (``{"value": shown, "key": compared}`` per setting; the key is a digest where the value is large)."""
    tagger = model.tagger
    config = model.config
    threshold = confidence_thresh if confidence_thresh is not None else config.confidence_thresh
    architecture = {k: v for k, v in tagger.config.to_dict().items() if k not in ("name", "tokenizer")}
    checkpoint = getattr(tagger, "checkpoint", None)
    caption = bool(config.caption and tagger.can_caption)
    if threshold is None:
        thresholds = {"value": "per-class", "key": "per-class " + _digest(np.asarray(tagger.thresholds, np.float32))}
    else:
        thresholds = {"value": float(threshold), "key": repr(float(threshold))}
    settings = {
        "model": {"value": tagger.config.name or f"custom {tagger.family}",
                  "key": f"{tagger.family} {_digest(architecture)}"},
        "checkpoint": ({"value": checkpoint.path, "key": f"{checkpoint.size} {checkpoint.fingerprint}"}
                       if checkpoint is not None and checkpoint.fingerprint else
                       {"value": None, "key": "unknown"}),
        "thresholds": thresholds,
        "vocabulary": _vocabulary(tagger, config),
        "classes": {"value": config.classes, "key": _digest([config.classes, config.filter_classes])},
        "language": {"value": config.language, "key": config.language},
        "caption": {"value": caption, "key": _digest([caption, config.caption_options if caption else None,
                                                      tagger.config.tokenizer if caption else None])},
        "store_logits": {"value": bool(store_logits), "key": str(bool(store_logits))},
        "precision": {"value": str(getattr(tagger, "precision", "fp32")),
                      "key": str(getattr(tagger, "precision", "fp32"))},
    }
    return settings


def _vocabulary(tagger: Any, config: Any) -> dict[str, Any]:
    """The tags answered and where their label queries come from: the names (in the run's language), which
    are built-in, the excluded ones, and for embedded tags the inputs of their embeddings (text encoder,
    templates, descriptions). Inputs, not the embeddings themselves: those differ at 1e-6 across CPUs."""
    from fiftyone_ram.models.registry import tag_list_signature

    names = tagger.names(config.language)
    parts: list[Any] = [tag_list_signature(names), np.flatnonzero(tagger.excluded).tolist()]
    vocabulary = tagger.vocabulary
    if vocabulary is not None:
        parts += [vocabulary.builtin_index.tolist(), vocabulary.base_signature]
        if not vocabulary.is_builtin_only:
            asked = vocabulary.spec
            parts += ([str(asked.text_encoder), asked.templates, _source_digest(asked.descriptions)]
                      if asked is not None else [_digest(b"".join(np.ascontiguousarray(r).tobytes() for r in vocabulary.embedded))])
    shown = f"{len(names)} tags" + ("" if vocabulary is None else f" ({len(vocabulary.embedded_names)} embedded)")
    return {"value": shown, "key": _digest(parts)}


def _source_digest(source: Any) -> str | None:
    if source is None:
        return None
    if isinstance(source, (str, Path)) and Path(source).is_file():
        return _digest(Path(source).read_bytes())
    return _digest(source)


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two settings, one phrase each: ``"thresholds: 0.9 then, per-class now
    (--threshold / --thresholds)"``."""
    out = []
    for name, option in COMPARED.items():
        old, new = recorded.get(name) or {}, current.get(name) or {}
        if old.get("key") != new.get("key"):
            then, now = old.get("value"), new.get("value")
            if then == now:  # same description, other content (another file of the same name...)
                then, now = f"{then} ({old.get('key')})", f"{now} ({new.get('key')})"
            out.append(f"{name}: {then} then, {now} now ({option})")
    return out
