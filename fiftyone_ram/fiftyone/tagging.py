"""Tagging a dataset safely: never overwrite unasked, resume after an interruption, record unreadable files.

``apply_model`` does the work (DataLoader, batching, asynchronous saves); this module adds what it lacks for
long runs over user data: a refusal to overwrite an existing label field, resuming from the samples that
have no labels yet, a per-run error summary, and optional sample tags.

Storage: labels in ``<label_field>``; for an unreadable image the reason in ``<label_field>_error`` (a string
field; the label field stays as it was). Results are written while the run goes (FiftyOne's ``SaveContext``
flushes every fraction of a second), so an interrupted run loses at most the batches in flight, and running
again with ``resume=True`` tags only what is still missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fiftyone_ram.errors import UserError


class FieldExistsError(UserError, ValueError):
    """The label field already holds labels and neither overwrite nor resume was asked for."""


def error_field(label_field: str) -> str:
    """Where the reason an image could not be tagged is stored."""
    return f"{label_field}_error"


def caption_field(label_field: str) -> str:
    """Where Tag2Text's caption is shown: a declared string field, since the App's sidebar lists neither the
    label container's dynamic ``caption`` attribute nor a declared one (checked in FiftyOne 1.22.1)."""
    return f"{label_field}_caption"


@dataclass
class TaggingSummary:
    """What one run did. ``failed`` maps each unreadable file to the reason."""

    label_field: str
    tagged: int = 0
    skipped: int = 0  # already labelled, left alone (resume)
    failed: dict[str, str] = field(default_factory=dict)
    untagged: int = 0  # neither labelled nor recorded: a whole batch failed inside the model (see the log)

    def __str__(self) -> str:
        lines = [f"{self.tagged} sample(s) tagged into '{self.label_field}'"]
        if self.skipped:
            lines.append(f"{self.skipped} already tagged, skipped")
        if self.failed:
            lines.append(f"{len(self.failed)} could not be read (reason in '{error_field(self.label_field)}'):")
            lines.extend(f"  {path}: {message}" for path, message in sorted(self.failed.items()))
        if self.untagged:
            lines.append(f"{self.untagged} not tagged because their batch failed (see the warnings above)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "tagged": self.tagged, "skipped": self.skipped,
                "failed": dict(self.failed), "untagged": self.untagged}


def tag_samples(samples, model, label_field: str = "ram", *, overwrite: bool = False, resume: bool = False,
                sample_tags: bool = False, batch_size: int | None = None, num_workers: int | None = None,
                confidence_thresh: float | None = None, store_logits: bool = False,
                progress: bool | Callable | None = None, skip_failures: bool = True) -> TaggingSummary:
    """Tag ``samples`` (a dataset or view) with ``model`` into ``label_field``.

    overwrite: re-tag samples that already have labels (an unreadable one keeps its old labels)
    resume: tag only the samples without labels (what an interrupted run left)
    sample_tags: also add each sample's tag names to its ``tags`` (added, never removed)
    confidence_thresh: one threshold for all tags instead of the model's per-class thresholds
    num_workers: image-decoding processes (None: FiftyOne's choice)
    Other options go to ``apply_model``. Raises :class:`FieldExistsError` when ``label_field`` already holds
    labels in ``samples`` and neither ``overwrite`` nor ``resume`` is set.
    """
    summary = TaggingSummary(label_field)
    has_field = label_field in samples.get_field_schema()
    todo = samples
    if has_field and not overwrite:
        done = samples.exists(label_field)
        summary.skipped = done.count()
        if summary.skipped and not resume:
            raise FieldExistsError(
                f"'{label_field}' already holds labels on {summary.skipped} of {samples.count()} samples: pass "
                f"overwrite (CLI: --overwrite) to replace them or resume (--resume) to tag only the samples "
                f"without them")
        todo = samples.exists(label_field, False)
    ids = todo.values("id")
    if not ids:
        return summary
    errors = error_field(label_field)
    if errors in samples.get_field_schema():
        stale = todo.exists(errors)
        stale.set_values(errors, [None] * stale.count())  # this run records its own failures
    todo.apply_model(model, label_field=label_field, confidence_thresh=confidence_thresh,
                     store_logits=store_logits, batch_size=batch_size, num_workers=num_workers,
                     skip_failures=skip_failures, progress=progress)
    _summarize(samples.select(ids), label_field, summary)
    show_captions(samples.select(ids), label_field)
    if sample_tags:
        add_sample_tags(samples, label_field)
    return summary


def _summarize(processed, label_field: str, summary: TaggingSummary) -> None:
    errors = error_field(label_field)
    schema = processed.get_field_schema()
    missing = processed.exists(label_field, False) if label_field in schema else processed
    if errors in schema:
        paths, messages = processed.exists(errors).values(["filepath", errors])
        summary.failed = dict(zip(paths, messages, strict=True))
        missing = missing.exists(errors, False)
    summary.untagged = missing.count()
    summary.tagged = len(processed) - len(summary.failed) - summary.untagged


def show_captions(samples, label_field: str) -> None:
    """Copy Tag2Text captions (``<label_field>.caption``) to :func:`caption_field`, so the App shows them."""
    captioned = samples.exists(f"{label_field}.caption")
    if captioned.count():
        captioned.set_values(caption_field(label_field), captioned.values(f"{label_field}.caption"))


def add_sample_tags(samples, label_field: str) -> None:
    """Add the label names in ``label_field`` to each sample's tags (idempotent; existing tags are kept)."""
    view = samples.exists(label_field)
    names, tags = view.values([f"{label_field}.classifications.label", "tags"])
    merged = [list(dict.fromkeys([*(old or []), *(new or [])])) for new, old in zip(names, tags, strict=True)]
    view.set_values("tags", merged)
