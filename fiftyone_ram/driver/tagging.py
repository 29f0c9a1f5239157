"""Tagging a dataset safely: the tagging job's settings and checks (:class:`TagJob`), and the run that applies it.

A run never overwrites unasked, resumes only the same run, shares the work with concurrent runs and records
unreadable files. The work runs in this process (:mod:`.local_executor`) or on Ray (:mod:`.ray_executor`);
other models than ours go through ``apply_model``. What this module adds for long runs over user data:

- everything that can be refused is refused before anything is written (:meth:`TagJob.check`): the options,
  an empty view, a field that cannot hold the labels, a resume of other settings, labels without overwrite;
- every run is recorded in the run store (:mod:`fiftyone_ram.driver.runs`, kind ``tag``) with the settings that
  decide its labels (:mod:`.tagging_settings`), and ``resume`` only continues a run with the same settings; an
  interrupted overwrite is continued as an overwrite; a run that fails is recorded as failed, with its reason;
- runs at once on the same field share the work: each sample is claimed in the database before it is tagged
  (:mod:`fiftyone_ram.driver.claims`), so every sample is tagged by exactly one of them; a run that dies leaves
  its claims to expire, and a run still going waits for them instead of counting them as done;
- a per-run summary (:class:`TaggingSummary`), and optional sample tags.

Storage: labels in ``<label_field>``; for an unreadable image the reason in ``<label_field>_error`` (a string
field; the label field stays as it was). Results are written batch by batch, so an interrupted run loses at
most the batch in flight, and running again with ``resume=True`` tags only what is still missing (or, for an
overwrite, not yet rewritten).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from fiftyone_ram.driver import claims, runs
from fiftyone_ram.driver.ray_executor import ExecutorSettings, RayOptions
from fiftyone_ram.driver.tagging_settings import differences, tagging_settings
from fiftyone_ram.errors import OptionError, UserError, database_gone
from fiftyone_ram.jobs import FIELD, THRESHOLD, setting
from fiftyone_ram.scheduling import plan_for_model
from fiftyone_ram.tagger_spec import BATCH_SIZE

#: Samples claimed at a time, in batches: a run takes this many batches, tags them, and claims the next. Small
#: enough that concurrent runs share a few hundred samples; large enough that a window's start-up (the claim,
#: decoding workers where there are several) stays a small part of the time.
CLAIM_BATCHES = 16
#: How often a run waiting for another run's claims looks again.
WAIT_S = 1.0


class FieldExistsError(UserError, ValueError):
    """The label field already holds labels and neither overwrite nor resume was asked for."""


class RunMismatchError(UserError, ValueError):
    """``resume`` asked for a run whose recorded settings differ from this run's, or another run is busy."""


class NothingToTagError(UserError, ValueError):
    """An empty dataset or view: a run would record nothing."""


def error_field(label_field: str) -> str:
    """Where the reason an image could not be tagged is stored."""
    return f"{label_field}_error"


def caption_field(label_field: str) -> str:
    """Where Tag2Text's caption is shown: a declared string field, since the App's sidebar lists neither the
    label container's dynamic ``caption`` attribute nor a declared one (checked in FiftyOne 1.22.1)."""
    return f"{label_field}_caption"


def exact_count(samples) -> int:
    """The number of samples, counted (``count()`` of a whole dataset reads MongoDB's estimate, which can be off
    after an unclean shutdown)."""
    return samples.count("id")


@dataclass
class TagJob(ExecutorSettings):
    """The settings of a tagging run (what the model does with its scores is the model's: language, captions,
    ``classes`` are in its config)."""

    what = "tagging"

    label_field: str = setting("ram", kind=FIELD, flag="--field", label="Output field",
                               help="the Classifications field for the tags; unreadable images get <field>_error")
    threshold: float | None = setting(None, kind=THRESHOLD, label="One threshold",
                                      help="one threshold for all tags instead of the per-class ones")
    store_logits: bool = setting(False, label="Store logits", help="also store the logits over the scored tags")
    sample_tags: bool = setting(False, label="Also add the tags to the samples' tags",
                                help="also add each sample's tag names to its tags (existing tags are kept)")
    resume: bool = setting(False, form=False,
                           help="continue the field's run (same settings): tag only what it has not tagged")
    overwrite: bool = setting(False, form=False, help="replace the labels already in the field")
    batch_size: int = setting(BATCH_SIZE, low=1, label="Batch size", help="images per model call")
    num_workers: int | None = setting(None, low=0, label="Image loading workers",
                                      help="image decoding processes (default: planned from the model's cost)")
    #: Python only: a batch that fails inside the model is logged, counted and left untagged (else raised).
    skip_failures: bool = True

    def check_values(self) -> None:
        super().check_values()
        if self.resume and self.overwrite:
            raise OptionError("resume continues a run and overwrite starts it again: pass one of them (CLI: "
                              "--resume or --overwrite), not both")

    def check(self, samples, model=None, *, adding: bool = False) -> None:
        """Everything :meth:`run` would refuse, before anything is written (``samples`` may be None: a dataset
        the command line has not created yet; ``model`` None: the checks that need no model; ``adding``: files
        are about to be added, so an empty dataset, as another run creating it leaves it for a moment, is no
        error)."""
        self.check_executor()
        self.check_data(samples, adding=adding)
        if samples is not None and model is not None:
            _plan(samples, samples._root_dataset, self, self._settings(model), claims.Holder())

    def check_data(self, samples, *, adding: bool = False) -> None:
        """The checks of :meth:`check` on the samples alone (no executor, no model)."""
        import fiftyone.core.labels as fol

        from fiftyone_ram.fields import check_output_field, check_string_field

        check_output_field(samples, self.label_field, fol.Classifications, option="label field (CLI: --field)")
        check_string_field(samples, error_field(self.label_field), purpose="where tagging records unreadable images")
        if samples is not None and not adding and exact_count(samples) == 0:
            raise NothingToTagError(f"nothing to tag: the {_what(samples)} has no samples (nothing was written)")

    def _settings(self, model) -> dict[str, Any]:
        return tagging_settings(model, confidence_thresh=self.threshold, store_logits=self.store_logits)

    def run(self, samples, model, progress: bool | Callable | None = None) -> TaggingSummary:
        """Tag ``samples`` (a dataset or view) with ``model`` (see :func:`tag_samples`)."""
        self.check(samples, model)
        settings = self._settings(model)
        dataset = samples._root_dataset
        summary = TaggingSummary(self.label_field)
        with claims.Holder() as holder:
            with claims.dataset_lock(dataset.name, holder):
                dataset.reload()  # another run may have changed the schema or the run record
                self.check_data(samples)
                plan = _plan(samples, dataset, self, settings, holder)
                _apply(dataset, plan, holder)
            todo = _candidates(samples, self.label_field, plan, summary)
            try:
                _tag_claimed(samples, model, self, todo, plan, holder, summary, progress)
            except BaseException as exc:
                if database_gone(exc):  # nothing more can be written: the leases expire on their own
                    holder.database_gone = True
                    raise
                claims.release(plan.scope, holder)
                _end(dataset, plan, holder, todo, stopped=exc)
                raise
            _end(dataset, plan, holder, todo, stopped=None)
        show_captions(samples, self.label_field)
        if self.sample_tags:
            add_sample_tags(samples, self.label_field)
        return summary


def tag_samples(samples, model, label_field: str = TagJob.default("label_field"), *, job: TagJob | None = None,
                progress: bool | Callable | None = None, skip_failures: bool = True, **settings: Any
                ) -> TaggingSummary:
    """Tag ``samples`` (a dataset or view) with ``model`` into ``label_field``.

    ``settings``: :class:`TagJob`'s (``resume``, ``overwrite``, ``threshold``, ``store_logits``, ``sample_tags``,
    ``batch_size``, ``num_workers``, ``executor`` and the Ray executor's), or ``job`` itself. ``progress``: a
    function ``(fraction, label)``, or True / False / None for a console bar (None: as FiftyOne's config says).
    ``skip_failures``: a batch that fails inside the model is logged, counted and left untagged (else raised).

    Raises :class:`FieldExistsError` when ``label_field`` already holds labels in ``samples`` and neither
    ``overwrite`` nor ``resume`` is set, :class:`RunMismatchError` when a resume's settings differ from the
    recorded run's, :class:`NothingToTagError` for an empty view and ``FieldNameError`` for a field that cannot
    hold ``Classifications``; all before anything is written. Runs started at once on the same field (processes,
    machines) share the work: each sample is tagged by exactly one of them.
    """
    if job is None:
        job = TagJob(label_field=label_field, skip_failures=skip_failures, **settings)
    elif settings:
        raise TypeError("give the tagging job or its settings, not both")
    return job.run(samples, model, progress)


@dataclass
class TaggingSummary:
    """What one run did. ``failed`` maps each unreadable file to the reason; ``batch_errors`` holds the reasons
    batches failed inside the model (their samples are ``untagged``)."""

    label_field: str
    tagged: int = 0
    skipped: int = 0  # already labelled (or, continuing an overwrite, already rewritten), left alone
    failed: dict[str, str] = field(default_factory=dict)
    untagged: int = 0  # neither labelled nor recorded: a whole batch failed inside the model
    elsewhere: int = 0  # tagged by another run at the same time
    batch_errors: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """One line when the run produced nothing usable (every image unreadable, or every batch failed):
        such a run is reported as a failure, never as done."""
        if self.tagged or self.elsewhere or not (self.failed or self.untagged):
            return None
        if self.untagged:
            return f"no sample was tagged into '{self.label_field}': the model failed on every batch " \
                   f"({self.batch_errors[0] if self.batch_errors else 'see the log'})"
        return f"no sample was tagged into '{self.label_field}': none of the {len(self.failed)} images could be " \
               f"read ({next(iter(self.failed.values()))})"

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
            lines.append(f"{self.untagged} not tagged because their batch failed in the model:")
            lines.extend(f"  {message}" for message in self.batch_errors[:5])
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "tagged": self.tagged, "skipped": self.skipped,
                "failed": dict(self.failed), "untagged": self.untagged, "elsewhere": self.elsewhere,
                "batch_errors": list(self.batch_errors)}


# -- the plan ------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    record: runs.RunRecord
    scope: str
    rewrite: bool  # every sample is (re)tagged once, labels or not; else only those without labels
    forget: list[tuple[str, tuple[str, ...] | None]] = field(default_factory=list)  # claims to drop first
    drop_record: bool = False  # the recorded run belongs to a deleted field


def _scope(dataset, record: runs.RunRecord) -> str:
    """What a tagging run's sample claims are filed under."""
    return f"{dataset._doc.id}:{record.target}:{record.run_id}"


def _overwrites(record: runs.RunRecord) -> bool:
    return bool(record.details.get("overwrite"))


def _plan(samples, dataset, job: TagJob, settings: dict[str, Any], holder: claims.Holder) -> _Plan:
    """Which run this one is (new, continued or joined) and what it tags, or the refusal. Reads only: the
    caller applies the plan (under the dataset lock)."""
    label_field = job.label_field
    has_field = label_field in dataset.get_field_schema()
    record = runs.load(dataset, "tag", label_field) if has_field else None
    labelled = samples.exists(label_field).count() if has_field else 0
    busy = claims.other_workers(_scope(dataset, record), holder) if record is not None else []
    changed = differences(record.settings, settings) if record is not None else []
    same = record is not None and not changed
    again = "pass overwrite=True (CLI: --overwrite)"

    if same and busy and (job.resume or not job.overwrite or _overwrites(record)):
        return _joined(dataset, record)  # a run with these settings is going on: share its work
    if job.resume:
        if record is None:
            if labelled:
                raise RunMismatchError(
                    f"'{label_field}' holds labels on {labelled} of {exact_count(samples)} samples but no record of "
                    f"the run that wrote them, so their settings are unknown: {again} to tag everything again with "
                    f"these settings, or choose another field")
            return _new(dataset, label_field, settings, overwrite=False, drop_record=not has_field)
        if not same:
            raise RunMismatchError(
                f"'{label_field}' was tagged with other settings ({'; '.join(changed)}): resume only continues "
                f"the same run; {again} to re-tag with these settings, or choose another field")
        return _continued(dataset, record)
    if job.overwrite:
        if busy:
            shown = ", ".join(f"process {w.get('pid')} on {w.get('host')}" for w in busy)
            raise RunMismatchError(f"another run is tagging '{label_field}' right now ({shown}): wait for it to "
                                   f"finish before overwriting, or resume (CLI: --resume) to help it")
        plan = _new(dataset, label_field, settings, overwrite=True, drop_record=not has_field)
    elif labelled:
        hint = f" (written with other settings: {'; '.join(changed)})" if changed else ""
        raise FieldExistsError(
            f"'{label_field}' already holds labels on {labelled} of {exact_count(samples)} samples{hint}: pass "
            f"overwrite (CLI: --overwrite) to replace them or resume (--resume) to tag only the samples "
            f"without them")
    else:
        plan = _new(dataset, label_field, settings, overwrite=False, drop_record=not has_field)
    if record is not None:
        plan.forget.append((_scope(dataset, record), None))
    return plan


def _new(dataset, label_field: str, settings: dict[str, Any], *, overwrite: bool, drop_record: bool) -> _Plan:
    record = runs.RunRecord("tag", label_field, settings, details={"overwrite": overwrite,
                                                                    "pass_id": uuid.uuid4().hex})
    return _Plan(record, _scope(dataset, record), rewrite=overwrite, drop_record=drop_record)


def _continued(dataset, record: runs.RunRecord) -> _Plan:
    """A new pass of a recorded run (nobody else is on it): failures and stale claims of earlier passes are
    tried again; an overwrite not complete goes on with what it has not rewritten."""
    rewrite = _overwrites(record) and not record.finished
    scope = _scope(dataset, record)
    record.details["pass_id"] = uuid.uuid4().hex
    record.ended(runs.RUNNING)
    return _Plan(record, scope, rewrite=rewrite, forget=[(scope, ("claimed", "failed") if rewrite else None)])


def _joined(dataset, record: runs.RunRecord) -> _Plan:
    return _Plan(record, _scope(dataset, record), rewrite=_overwrites(record) and not record.finished)


def _apply(dataset, plan: _Plan, holder: claims.Holder) -> None:
    """Make the plan the dataset's state: drop what it replaces, declare the fields, record the run."""
    if plan.drop_record:
        runs.delete(dataset, "tag", plan.record.target)
    for scope, states in plan.forget:
        claims.forget(scope, states)
    _declare_fields(dataset, plan.record.target)
    runs.save(dataset, plan.record)
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

    every = samples.values("id")
    if plan.rewrite:
        done = claims.finished(plan.scope)
        todo = [i for i in every if i not in done]
    else:
        todo = samples.match((~F(label_field).exists()) | F(error_field(label_field)).exists()).values("id")
    summary.skipped = len(every) - len(todo)
    return todo


# -- the work ------------------------------------------------------------------------------------------------


class _Bar:
    """The run's progress: a function ``(fraction, label)`` the caller gave, or FiftyOne's console bar."""

    def __init__(self, progress: bool | Callable | None, total: int) -> None:
        import fiftyone.core.utils as fou

        self.total = max(total, 1)
        self.callback = progress if callable(progress) else None
        self.bar = None if self.callback else fou.ProgressBar(total=total, progress=progress)
        self.done = 0

    def __enter__(self) -> _Bar:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc_info)

    def set(self, done: int) -> None:
        self.done = min(done, self.total)
        if self.callback is not None:
            self.callback(self.done / self.total, f"Tagged {self.done:,} of {self.total:,}")
        else:
            self.bar.set_iteration(self.done)


def _tag_claimed(samples, model, job: TagJob, todo: list[str], plan: _Plan, holder: claims.Holder,
                 summary: TaggingSummary, progress) -> None:
    """Claim ``todo`` a window at a time and tag what was claimed; then, until every sample is finished by
    someone, take over the claims that other runs left (a dead run's expire) and wait for those still held by
    live runs. With the Ray executor, the window is all of ``todo``: one Ray pipeline tags what was claimed."""
    ray = job.ray_options
    window = job.batch_size * CLAIM_BATCHES if ray is None else max(len(todo), 1)
    attempted: set[str] = set()
    finished: set[str] = set()
    with _Bar(progress, len(todo)) as bar:
        while True:
            pending = [i for i in todo if i not in attempted and i not in finished]
            if not pending:
                break
            claimed_any = False
            for start in range(0, len(pending), window):
                mine = claims.take(plan.scope, pending[start:start + window], holder)
                if not mine:
                    continue
                claimed_any = True
                attempted.update(mine)
                _tag_chunk(samples, model, job, mine, plan, holder, summary, bar, ray)
            finished = _finished(plan.scope)
            bar.set(len(attempted) + len(finished & (set(todo) - attempted)))
            if not claimed_any and any(i not in finished for i in pending):
                time.sleep(WAIT_S)  # the rest is claimed by other runs: wait for them or for their leases to expire
    summary.elsewhere = len(set(todo) - attempted)


def _finished(scope: str) -> set[str]:
    return claims.finished(scope) | claims.finished(scope, "failed")


def _tag_chunk(samples, model, job: TagJob, ids: list[str], plan: _Plan, holder: claims.Holder,
               summary: TaggingSummary, bar: _Bar, ray: RayOptions | None) -> None:
    """Tag the claimed ``ids`` (here, :mod:`.local_executor`, or on Ray) and record what became of each.
    A sample counts as written when it was saved (its ``last_modified_at`` moved) without an error."""
    errors = error_field(job.label_field)
    chunk = samples.select(ids, ordered=True)
    stale = chunk.exists(errors)
    if stale.count():
        stale.set_values(errors, [None] * stale.count())  # this run records its own failures
    before = dict(zip(*chunk.values(["id", "last_modified_at"])))
    offset = bar.done

    def advance(count: int) -> None:
        bar.set(bar.done + count)

    try:
        if ray is not None:
            _tag_on_ray(chunk, len(ids), job, _run_model(model, job), ray, advance)
        elif _runs_here(samples, model):
            from fiftyone_ram.driver.local_executor import tag_locally

            run_model = _run_model(model, job)
            loading = plan_for_model(run_model, job.num_workers)
            tag_locally(chunk, run_model, job.label_field, batch_size=job.batch_size,
                        num_workers=loading.num_workers, pin_memory=loading.pin_memory,
                        skip_failures=job.skip_failures, advance=advance, errors=summary.batch_errors)
        else:  # another model, or a generated view (patches...): FiftyOne's own loop, which writes those back
            loading = plan_for_model(model, job.num_workers)
            options = {"batch_size": job.batch_size, "num_workers": job.num_workers,
                       "confidence_thresh": job.threshold, "store_logits": job.store_logits,
                       "skip_failures": job.skip_failures}
            if loading is not None:
                options.update(num_workers=loading.num_workers, pin_memory=loading.pin_memory)
            chunk.apply_model(model, label_field=job.label_field, progress=False, **options)
    except BaseException as exc:  # interrupted: what was saved is finished, the rest goes back to the pool
        if database_gone(exc):
            raise
        written, _ = _outcome(chunk, job.label_field, before, TaggingSummary(job.label_field))
        claims.finish(plan.scope, holder, written, [])
        raise
    written, failed = _outcome(chunk, job.label_field, before, summary)
    claims.finish(plan.scope, holder, written, failed)
    bar.set(offset + len(ids))


def _runs_here(samples, model) -> bool:
    """Whether the driver runs ``model`` itself (:mod:`.local_executor`): our model, on samples of a dataset
    (a generated view, such as patches, goes through ``apply_model``, which knows how to write it back)."""
    return hasattr(model, "predict_outputs") and not samples._is_generated


def _run_model(model, job: TagJob):
    """``model`` as ``apply_model`` would run it: a copy (the tagger shared, the caller's settings left alone)
    whose config holds the run's single threshold and that stores logits if asked."""
    import copy

    tagger = model.tagger
    model = copy.copy(model)  # (pickle's protocol: the copy drops its loaded tagger, which is put back)
    model._tagger = tagger
    model.config = copy.copy(model.config)
    if job.threshold is not None:
        model.config.confidence_thresh = job.threshold  # replaces the per-class thresholds
    model.store_logits = bool(job.store_logits)
    return model


def _tag_on_ray(chunk, count: int, job: TagJob, model, ray: RayOptions, advance: Callable[[int], None]) -> None:
    """The claimed samples through one Ray pipeline, written back by sample id."""
    from fiftyone_ram.driver.ray_executor import predict_pages
    from fiftyone_ram.driver.writer import LabelWriter, iter_pages

    size = job.batch_size
    stream = predict_pages(iter_pages(chunk, size), model, ray, max_pages=-(-count // size))
    with LabelWriter(chunk, job.label_field) as writer:
        for ids, outputs in stream:
            writer.write(ids, outputs)
            advance(len(ids))


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


def _end(dataset, plan: _Plan, holder: claims.Holder, todo: list[str], *, stopped: BaseException | None) -> None:
    """Record how the run ended, unless another run is still on it (the last one to leave records it): failed
    with its reason, interrupted (stopped by the user, or samples left), or completed."""
    with claims.dataset_lock(dataset.name, holder):
        claims.leave(plan.scope, holder)  # first, so that of two runs ending at once the last sees it is last
        dataset.reload()
        record = runs.load(dataset, "tag", plan.record.target)
        if record is None or record.run_id != plan.record.run_id:
            return  # replaced meanwhile by an overwrite
        if claims.other_workers(plan.scope, holder):
            return
        if stopped is not None:
            record.ended(runs.INTERRUPTED if isinstance(stopped, (KeyboardInterrupt, SystemExit))
                         else runs.FAILED, stopped)
        elif any(i not in _finished(plan.scope) for i in todo):
            record.ended(runs.INTERRUPTED)
        else:
            record.ended(runs.COMPLETED)
            claims.forget(plan.scope)
        runs.save(dataset, record)


def _what(samples) -> str:
    return "view" if samples is not samples._root_dataset else "dataset"


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
