"""Tagging a dataset safely: never overwrite unasked, resume only the same run, share the work between
concurrent runs, record unreadable files.

The work runs in this process (:mod:`.local_engine`: decoding ahead of the model, documents written by a
thread while the model runs; what ``apply_model`` stores, at the model's speed) or on Ray (:mod:`.ray_engine`);
other models than ours go through ``apply_model``. This module adds what those lack for long runs over user
data:

- the label field is checked before anything is written (FiftyOne's own fields, fields of another type);
- every run is recorded with its settings (:mod:`fiftyone_ram.driver.runs`), and ``resume`` only
  continues a run with the same settings; an interrupted overwrite is continued as an overwrite;
- runs at once on the same field share the work: each sample is claimed in the database before it is tagged
  (:mod:`fiftyone_ram.driver.claims`), so every sample is tagged by exactly one of them;
- a per-run error summary, and optional sample tags.

Storage: labels in ``<label_field>``; for an unreadable image the reason in ``<label_field>_error`` (a string
field; the label field stays as it was). Results are written while the run goes (FiftyOne's ``SaveContext``
flushes every fraction of a second), so an interrupted run loses at most the batches in flight, and running
again with ``resume=True`` tags only what is still missing (or, for an overwrite, not yet rewritten).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.errors import OptionError, UserError
from fiftyone_ram.driver import claims
from fiftyone_ram.driver.ray_executor import RayOptions, check_engine
from fiftyone_ram.driver.runs import (
    TaggingRecord,
    differences,
    load_record,
    save_record,
    tagging_settings,
)
from fiftyone_ram.scheduling import plan_for_model

#: Samples claimed at a time, in batches: a run takes this many batches, tags them, and claims the next. Small
#: enough that concurrent runs share a few hundred samples; large enough that a window's start-up (the claim,
#: decoding workers where there are several) stays a small part of the time.
CLAIM_BATCHES = 16


class FieldExistsError(UserError, ValueError):
    """The label field already holds labels and neither overwrite nor resume was asked for."""


class RunMismatchError(UserError, ValueError):
    """``resume`` asked for a run whose recorded settings differ from this run's, or another run is busy."""


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
    skipped: int = 0  # already labelled (or, continuing an overwrite, already rewritten), left alone
    failed: dict[str, str] = field(default_factory=dict)
    untagged: int = 0  # neither labelled nor recorded: a whole batch failed inside the model (see the log)
    elsewhere: int = 0  # tagged, or being tagged, by another run at the same time

    def __str__(self) -> str:
        lines = [f"{self.tagged} sample(s) tagged into '{self.label_field}'"]
        if self.skipped:
            lines.append(f"{self.skipped} already tagged, skipped")
        if self.elsewhere:
            lines.append(f"{self.elsewhere} tagged by another run at the same time")
        if self.failed:
            lines.append(f"{len(self.failed)} could not be read (reason in '{error_field(self.label_field)}'):")
            lines.extend(f"  {path}: {message}" for path, message in sorted(self.failed.items()))
        if self.untagged:
            lines.append(f"{self.untagged} not tagged because their batch failed (see the warnings above)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "tagged": self.tagged, "skipped": self.skipped,
                "failed": dict(self.failed), "untagged": self.untagged, "elsewhere": self.elsewhere}


def check_tagging_options(samples, label_field: str, *, overwrite: bool = False, resume: bool = False,
                          confidence_thresh: float | None = None) -> None:
    """What :func:`tag_samples` refuses before anything is written, for callers that write first (the CLI
    adds files to the dataset): both ``overwrite`` and ``resume``, a bad threshold, a field that cannot hold
    the labels (``samples`` may be None: a dataset not created yet)."""
    import fiftyone.core.labels as fol

    from fiftyone_ram.fields import check_output_field, check_string_field

    if overwrite and resume:
        raise OptionError("resume continues a run and overwrite starts it again: pass one of them "
                          "(CLI: --resume or --overwrite), not both")
    if confidence_thresh is not None:
        check_threshold(confidence_thresh, "confidence_thresh (CLI: --threshold)")
    check_output_field(samples, label_field, fol.Classifications, option="label field")
    check_string_field(samples, error_field(label_field), purpose="where tagging records unreadable images")


def tag_samples(samples, model, label_field: str = "ram", *, overwrite: bool = False, resume: bool = False,
                sample_tags: bool = False, batch_size: int | None = None, num_workers: int | None = None,
                confidence_thresh: float | None = None, store_logits: bool = False,
                progress: bool | Callable | None = None, skip_failures: bool = True, engine: str = "local",
                ray_options: RayOptions | None = None) -> TaggingSummary:
    """Tag ``samples`` (a dataset or view) with ``model`` into ``label_field``.

    overwrite: re-tag samples that already have labels (an unreadable one keeps its old labels)
    resume: continue the field's run, which must have had the same settings: tag the samples without labels
        (and those whose last attempt failed); an interrupted overwrite goes on rewriting what it had not
    sample_tags: also add each sample's tag names to its ``tags`` (added, never removed), also to samples
        tagged before (a resume with nothing left to tag still adds them)
    confidence_thresh: one threshold for all tags instead of the model's per-class thresholds
    num_workers: image decoders (None: ``fiftyone_ram.scheduling.plan_loading`` splits the machine); 0 or 1
        decode in a thread beside the model, more in DataLoader processes
    engine: ``local`` (this process) or ``ray`` (Ray Data, :mod:`.ray_engine`, with
        ``ray_options``); both store the same fields and follow the same run records and resume rules
    Raises :class:`FieldExistsError` when ``label_field`` already holds
    labels in ``samples`` and neither ``overwrite`` nor ``resume`` is set, :class:`RunMismatchError` when a
    resume's settings differ from the recorded run's, and ``FieldNameError`` for a field that cannot hold
    ``Classifications``; all before anything is written. Runs started at once on the same field (processes,
    machines) share the work: each sample is tagged by exactly one of them.
    """
    check_tagging_options(samples, label_field, overwrite=overwrite, resume=resume,
                          confidence_thresh=confidence_thresh)
    check_engine(engine)
    settings = tagging_settings(model, confidence_thresh=confidence_thresh, store_logits=store_logits)
    dataset = samples._root_dataset
    summary = TaggingSummary(label_field)
    with claims.Holder() as holder:
        with claims.dataset_lock(dataset.name, holder):
            dataset.reload()  # another run may have changed the schema or the run record
            check_tagging_options(samples, label_field)
            plan = _plan(samples, dataset, label_field, settings, holder, overwrite=overwrite, resume=resume)
            _apply(dataset, plan, holder)
        todo = _candidates(samples, label_field, plan, summary)
        try:
            _tag_claimed(samples, model, label_field, todo, plan, holder, summary, batch_size=batch_size,
                         num_workers=num_workers, confidence_thresh=confidence_thresh, store_logits=store_logits,
                         progress=progress, skip_failures=skip_failures,
                         ray_options=(ray_options or RayOptions()) if engine == "ray" else None)
        except BaseException:
            claims.release(plan.scope, holder)
            _end(dataset, plan, holder, todo, interrupted=True)
            raise
        _end(dataset, plan, holder, todo, interrupted=False)
    show_captions(samples, label_field)
    if sample_tags:
        add_sample_tags(samples, label_field)
    return summary


@dataclass
class _Plan:
    record: TaggingRecord
    scope: str
    rewrite: bool  # every sample is (re)tagged once, labels or not; else only those without labels
    forget: list[tuple[str, tuple[str, ...] | None]] = field(default_factory=list)  # claims to drop first
    drop_record: bool = False  # the recorded run belongs to a deleted field


def check_run(samples, model, label_field: str = "ram", *, overwrite: bool = False, resume: bool = False,
              confidence_thresh: float | None = None, store_logits: bool = False) -> None:
    """Raise what :func:`tag_samples` would refuse (bad options, a taken field, a resume of other settings,
    labels without overwrite or resume), writing nothing: for callers that write before tagging."""
    check_tagging_options(samples, label_field, overwrite=overwrite, resume=resume,
                          confidence_thresh=confidence_thresh)
    settings = tagging_settings(model, confidence_thresh=confidence_thresh, store_logits=store_logits)
    _plan(samples, samples._root_dataset, label_field, settings, claims.Holder(), overwrite=overwrite,
          resume=resume)


def _plan(samples, dataset, label_field: str, settings: dict[str, Any], holder: claims.Holder, *,
          overwrite: bool, resume: bool) -> _Plan:
    """Which run this one is (new, continued or joined) and what it tags, or the refusal. Reads only: the
    caller applies the plan (under the dataset lock)."""
    has_field = label_field in dataset.get_field_schema()
    record = load_record(dataset, label_field) if has_field else None
    labelled = samples.exists(label_field).count() if has_field else 0
    busy = claims.other_workers(record.scope(dataset), holder) if record is not None else []
    changed = differences(record.settings, settings) if record is not None else []
    same = record is not None and not changed
    again = "pass overwrite=True (CLI: --overwrite)"

    if same and busy and (resume or not overwrite or record.overwrite):
        return _joined(dataset, record)  # a run with these settings is going on: share its work
    if resume:
        if record is None:
            if labelled:
                raise RunMismatchError(
                    f"'{label_field}' holds labels on {labelled} of {samples.count()} samples but no record of the "
                    f"run that wrote them, so their settings are unknown: {again} to tag everything again with "
                    f"these settings, or choose another field")
            return _new(dataset, label_field, settings, overwrite=False, drop_record=not has_field)
        if not same:
            raise RunMismatchError(
                f"'{label_field}' was tagged with other settings ({'; '.join(changed)}): resume only continues "
                f"the same run; {again} to re-tag with these settings, or choose another field")
        return _continued(dataset, record)
    if overwrite:
        if busy:
            shown = ", ".join(f"process {w.get('pid')} on {w.get('host')}" for w in busy)
            raise RunMismatchError(f"another run is tagging '{label_field}' right now ({shown}): wait for it to "
                                   f"finish before overwriting, or resume (CLI: --resume) to help it")
        plan = _new(dataset, label_field, settings, overwrite=True, drop_record=not has_field)
    elif labelled:
        hint = f" (written with other settings: {'; '.join(changed)})" if changed else ""
        raise FieldExistsError(
            f"'{label_field}' already holds labels on {labelled} of {samples.count()} samples{hint}: pass "
            f"overwrite (CLI: --overwrite) to replace them or resume (--resume) to tag only the samples "
            f"without them")
    else:
        plan = _new(dataset, label_field, settings, overwrite=False, drop_record=not has_field)
    if record is not None:
        plan.forget.append((record.scope(dataset), None))
    return plan


def _new(dataset, label_field: str, settings: dict[str, Any], *, overwrite: bool, drop_record: bool) -> _Plan:
    record = TaggingRecord(label_field, settings, overwrite=overwrite)
    return _Plan(record, record.scope(dataset), rewrite=overwrite, drop_record=drop_record)


def _continued(dataset, record: TaggingRecord) -> _Plan:
    """A new pass of a recorded run (nobody else is on it): failures and stale claims of earlier passes are
    tried again; an overwrite not complete goes on with what it has not rewritten."""
    import uuid

    rewrite = record.overwrite and record.state != "complete"
    scope = record.scope(dataset)
    record.pass_id = uuid.uuid4().hex
    record.state = "running"
    return _Plan(record, scope, rewrite=rewrite, forget=[(scope, ("claimed", "failed") if rewrite else None)])


def _joined(dataset, record: TaggingRecord) -> _Plan:
    return _Plan(record, record.scope(dataset), rewrite=record.overwrite and record.state != "complete")


def _apply(dataset, plan: _Plan, holder: claims.Holder) -> None:
    """Make the plan the dataset's state: drop what it replaces, declare the fields, record the run."""
    from fiftyone_ram.driver.runs import delete_record

    if plan.drop_record:
        delete_record(dataset, plan.record.label_field)
    for scope, states in plan.forget:
        claims.forget(scope, states)
    _declare_fields(dataset, plan.record.label_field)
    save_record(dataset, plan.record)
    claims.join(plan.scope, holder)


def _declare_fields(dataset, label_field: str) -> None:
    """Add the label and error fields to the schema now, under the lock. FiftyOne saves a dataset's field
    list whole, so two runs each adding them while they tag would lose one's change."""
    import fiftyone as fo

    schema = dataset.get_field_schema()
    if label_field not in schema:
        dataset.add_sample_field(label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    if error_field(label_field) not in schema:
        dataset.add_sample_field(error_field(label_field), fo.StringField)


def _candidates(samples, label_field: str, plan: _Plan, summary: TaggingSummary) -> list[str]:
    """The samples this run is to tag, in collection order: all not rewritten yet (an overwrite), else those
    without labels or whose last attempt failed."""
    from fiftyone import ViewField as F

    if plan.rewrite:
        done = claims.finished(plan.scope)
        todo = [i for i in samples.values("id") if i not in done]
    else:
        todo = samples.match((~F(label_field).exists()) | F(error_field(label_field)).exists()).values("id")
    summary.skipped = samples.count() - len(todo)
    return todo


def _tag_claimed(samples, model, label_field: str, todo: list[str], plan: _Plan, holder: claims.Holder,
                 summary: TaggingSummary, *, batch_size: int | None, num_workers: int | None,
                 confidence_thresh: float | None, store_logits: bool, progress, skip_failures: bool,
                 ray_options: RayOptions | None = None) -> None:
    """Claim ``todo`` a window at a time and tag what was claimed; then sweep once more for claims that a
    crashed run left behind. With ``ray_options``, the window is all of ``todo``: one Ray pipeline (its actors
    load the model once) tags what was claimed."""
    import fiftyone as fo
    import fiftyone.core.utils as fou

    window = max(int(batch_size or 1), 1) * CLAIM_BATCHES if ray_options is None else max(len(todo), 1)
    options = dict(confidence_thresh=confidence_thresh, store_logits=store_logits, batch_size=batch_size,
                   num_workers=num_workers, skip_failures=skip_failures)
    attempted: set[str] = set()
    shown = callable(progress) or (fo.config.show_progress_bars if progress is None else bool(progress))
    with fou.ProgressBar(total=len(todo), progress=progress) as bar:
        done = 0
        for sweep in range(2):
            pending = [i for i in todo if i not in attempted]
            if sweep and pending:
                finished = claims.finished(plan.scope) | claims.finished(plan.scope, "failed")
                pending = [i for i in pending if i not in finished]
            for start in range(0, len(pending), window):
                wanted = pending[start:start + window]
                mine = claims.take(plan.scope, wanted, holder)
                if sweep == 0:
                    done += len(wanted) - len(mine)
                    bar.set_iteration(min(done, len(todo)))
                if not mine:
                    continue
                attempted.update(mine)
                inner = _forward(bar, done, len(todo)) if shown else False
                _tag_chunk(samples, model, label_field, mine, plan, holder, summary, options, inner, ray_options)
                done += len(mine)
                bar.set_iteration(min(done, len(todo)))
    summary.elsewhere = len(todo) - len(attempted)


def _tag_chunk(samples, model, label_field: str, ids: list[str], plan: _Plan, holder: claims.Holder,
               summary: TaggingSummary, options: dict[str, Any], progress: Callable | bool,
               ray_options: RayOptions | None = None) -> None:
    """Tag the claimed ``ids`` (here, :mod:`.local_engine`, or on Ray) and record what became of each.
    A sample counts as written when it was saved (its ``last_modified_at`` moved) without an error."""
    errors = error_field(label_field)
    chunk = samples.select(ids, ordered=True)
    stale = chunk.exists(errors)
    if stale.count():
        stale.set_values(errors, [None] * stale.count())  # this run records its own failures
    before = dict(zip(*chunk.values(["id", "last_modified_at"])))
    try:
        if ray_options is not None:
            _tag_on_ray(chunk, len(ids), label_field, _run_model(model, options), ray_options, options, progress)
        elif _runs_here(samples, model):
            _tag_here(chunk, label_field, _run_model(model, options), options, progress)
        else:  # another model, or a generated view (patches...): FiftyOne's own loop, which writes those back
            plan = plan_for_model(model, options.get("num_workers"))
            if plan is not None:
                options = {**options, "num_workers": plan.num_workers, "pin_memory": plan.pin_memory}
            chunk.apply_model(model, label_field=label_field, progress=progress or False, **options)
    except BaseException:  # interrupted: what was saved is finished, the rest goes back to the pool
        written, _ = _outcome(chunk, label_field, before, TaggingSummary(label_field))
        claims.finish(plan.scope, holder, written, [])
        raise
    written, failed = _outcome(chunk, label_field, before, summary)
    claims.finish(plan.scope, holder, written, failed)


def _runs_here(samples, model) -> bool:
    """Whether the driver runs ``model`` itself (:mod:`.local_executor`): our model, on samples of a dataset
    (a generated view, such as patches, goes through ``apply_model``, which knows how to write it back)."""
    return hasattr(model, "predict_outputs") and not samples._is_generated


def _run_model(model, options: dict[str, Any]):
    """``model`` as ``apply_model`` would run it with ``options``: a copy (the tagger shared, the caller's
    settings left alone) whose config holds the run's single threshold and that stores logits if asked."""
    import copy

    tagger = model.tagger
    model = copy.copy(model)  # (pickle's protocol: the copy drops its loaded tagger, which is put back)
    model._tagger = tagger
    model.config = copy.copy(model.config)
    if options.get("confidence_thresh") is not None:
        model.config.confidence_thresh = options["confidence_thresh"]  # replaces the per-class thresholds
    model.store_logits = bool(options.get("store_logits"))
    return model


def _tag_here(chunk, label_field: str, model, options: dict[str, Any], progress: Callable | bool) -> None:
    from fiftyone_ram.driver.local_executor import tag_locally

    size = max(int(options["batch_size"] or model.tagger.batch_size), 1)
    advance = None
    if callable(progress):
        done = _Counter()

        def advance(count: int) -> None:
            done.iteration += count
            progress(done)
    plan = plan_for_model(model, options.get("num_workers"))
    tag_locally(chunk, model, label_field, batch_size=size, num_workers=plan.num_workers,
                pin_memory=plan.pin_memory, skip_failures=options["skip_failures"], advance=advance)


@dataclass
class _Counter:
    """What a progress callback reads (the ``iteration`` of FiftyOne's progress bar)."""

    iteration: int = 0


def _tag_on_ray(chunk, count: int, label_field: str, model, ray_options: RayOptions,
                options: dict[str, Any], progress: Callable | bool) -> None:
    """The claimed samples through one Ray pipeline, written back by sample id."""
    from fiftyone_ram.driver.ray_executor import predict_pages
    from fiftyone_ram.driver.writer import LabelWriter, iter_pages

    size = max(int(options["batch_size"] or model.tagger.batch_size), 1)
    stream = predict_pages(iter_pages(chunk, size), model, ray_options, max_pages=-(-count // size))
    done = _Counter()
    with LabelWriter(chunk, label_field) as writer:
        for ids, outputs in stream:
            writer.write(ids, outputs)
            if callable(progress):
                done.iteration += len(ids)
                progress(done)


def _outcome(chunk, label_field: str, before: dict[str, Any], summary: TaggingSummary
             ) -> tuple[list[str], list[str]]:
    errors = error_field(label_field)
    ids, modified, paths, messages = chunk.values(["id", "last_modified_at", "filepath", errors])
    written, failed = [], []
    for sample, when, path, message in zip(ids, modified, paths, messages, strict=True):
        if message is not None:
            failed.append(sample)
            summary.failed[path] = message
        elif when != before.get(sample):
            written.append(sample)
        else:
            failed.append(sample)  # its batch failed in the model: not tried again in this pass
            summary.untagged += 1
    summary.tagged += len(written)
    return written, failed


def _forward(bar, offset: int, total: int) -> Callable:
    """``apply_model``'s progress on one window, forwarded to the run's bar (one bar over all windows)."""
    return lambda inner: bar.set_iteration(min(offset + inner.iteration, total))


def _end(dataset, plan: _Plan, holder: claims.Holder, todo: list[str], *, interrupted: bool) -> None:
    """Record how the run ended, unless another run is still on it (the last one to leave records it)."""
    with claims.dataset_lock(dataset.name, holder):
        claims.leave(plan.scope, holder)  # first, so that of two runs ending at once the last sees it is last
        dataset.reload()
        record = load_record(dataset, plan.record.label_field)
        if record is None or record.run_id != plan.record.run_id:
            return  # replaced meanwhile by an overwrite
        if claims.other_workers(plan.scope, holder):
            return
        finished = claims.finished(plan.scope) | claims.finished(plan.scope, "failed")
        if interrupted or any(i not in finished for i in todo):
            record.state = "interrupted"
        else:
            record.state = "complete"
            claims.forget(plan.scope)
        save_record(dataset, record)


def show_captions(samples, label_field: str) -> None:
    """Copy Tag2Text captions (``<label_field>.caption``) to :func:`caption_field`, so the App shows them."""
    from fiftyone import ViewField as F

    target = caption_field(label_field)
    # Only the samples whose copy is missing or stale: a resume of a large view rewrites nothing else.
    stale = samples.exists(f"{label_field}.caption").match(F(f"{label_field}.caption") != F(target))
    if stale.count():
        stale.set_values(target, stale.values(f"{label_field}.caption"))


def add_sample_tags(samples, label_field: str) -> None:
    """Add the label names in ``label_field`` to each sample's tags (idempotent; existing tags are kept, and
    only samples that gain a tag are written)."""
    view = samples.exists(label_field)
    ids, names, tags = view.values(["id", f"{label_field}.classifications.label", "tags"])
    updates = {}
    for sample, new, old in zip(ids, names, tags, strict=True):
        merged = list(dict.fromkeys([*(old or []), *(new or [])]))
        if merged != list(old or []):
            updates[sample] = merged
    if updates:
        samples._root_dataset.set_values("tags", updates, key_field="id")
