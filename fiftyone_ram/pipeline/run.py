"""Running a pipeline: every stage is an existing job, every stage a recorded run, and a run killed anywhere
continues from the stage it was in.

The pipeline's own record (kind ``pipeline``, target the prefix) holds the spec, what it read and wrote, and per
step (``"r<N>:<stage>"``) the status; each stage's job records itself as it always does (``generate``, ``clean``,
``review``, ``tag`` and the evaluation), and each training is recorded as a ``finetune`` run (target
``<prefix>_r<N>_<stage>``) whose output is its model folder. A step is done when its entry says ``completed``; a
step that is not is run again the way its job resumes: generation is redone over its own field, cleaning
continues its categories (``resume``), training continues from its resumable state (``resume_run``, or starts
again over its own folder when it saved none), the review's apply is done again (it removes only what is still
there), the validation tagging continues (``resume``) and the evaluation is recorded again. So a pipeline
killed in any stage ends with the fields and model folders an uninterrupted one writes.

Nothing a user made is overwritten: a new pipeline refuses names that exist (fields, saved views, evaluation
keys, non-empty model folders), and the current tags (``<prefix>``) are replaced only while they are still
what the pipeline published there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiftyone_ram.driver import claims, runs
from fiftyone_ram.pipeline.spec import (RESUMABLE_CHANGES, TRAINING_STAGES, Names, PipelineError, PipelineJob,
                                        load_spec)
from fiftyone_ram.progress import ConsoleProgress, Progress, resolve_progress

KIND = "pipeline"
#: A step that waits for the user (the review in ``wait`` mode).
WAITING = "waiting"


@dataclass
class PipelineResult:
    """How a pipeline run ended: its status, the last round published, what it waits for, the report's rows."""

    dataset: str
    prefix: str
    status: str
    published: int | None
    waiting: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    figure: str | None = None

    def __str__(self) -> str:
        from fiftyone_ram.pipeline.report import table

        lines = [table(self.rows)] if self.rows else []
        if self.waiting:
            lines.append(self.waiting)
        else:
            lines.append(f"pipeline '{self.prefix}' of dataset '{self.dataset}': {self.status}, round "
                         f"{self.published} published in '{self.prefix}'")
        if self.figure:
            lines.append(f"figure: {self.figure}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "prefix": self.prefix, "status": self.status, "published": self.published,
                "waiting": self.waiting, "rows": self.rows, "figure": self.figure}


def run(spec: Any, *, resume: bool | None = None, progress: bool | Progress | None = True,
        messages: Callable[[str], None] | None = None, **changes: Any) -> PipelineResult:
    """Run the pipeline ``spec`` (a :class:`PipelineJob`, a mapping of its settings, or a YAML / JSON file; the
    keyword ``changes`` replace its values). ``resume``: continue the pipeline of this prefix where it stopped
    (a killed run, a review it waits for, more rounds). ``progress``: a console line (True), nothing, or
    ``callable(fraction, label)``; ``messages``: where the stage lines go (default: stderr)."""
    job = load_spec(spec, **({"resume": resume} if resume is not None else {}), **changes)
    import fiftyone as fo

    if not fo.dataset_exists(job.dataset):
        raise PipelineError(f"no FiftyOne dataset named {job.dataset!r}")
    dataset = fo.load_dataset(job.dataset)
    shown = resolve_progress(progress)
    clear = "\r\x1b[K" if isinstance(shown, ConsoleProgress) else ""  # a line of its own, below the progress line
    say = messages or (lambda text: print(f"{clear}{text}", file=sys.stderr, flush=True))
    return Pipeline(dataset, job, progress=shown, say=say).run()


@dataclass
class Views:
    """The samples each stage works on."""

    engine: Any  # the engine's samples: the pool without the validation samples
    validation: Any
    verified: Any = None


def resolve_view(dataset: Any, name: str, what: str) -> Any:
    """A saved view of ``dataset`` named ``name``, else the samples tagged ``name``; one line when neither."""
    if dataset.has_saved_view(name):
        return dataset.load_saved_view(name)
    view = dataset.match_tags(name)
    if view.count("id") == 0:
        raise PipelineError(f"{what}: dataset '{dataset.name}' has no saved view {name!r} and no sample tagged "
                            f"{name!r}")
    return view


def views_of(dataset: Any, job: PipelineJob) -> Views:
    """The engine's samples (``samples`` without the validation samples), the validation view and the verified
    view, as the spec names them."""
    pool = resolve_view(dataset, job.samples, "samples") if job.samples else dataset
    validation = resolve_view(dataset, job.validation, "validation")
    if not dataset.has_saved_view(job.validation):
        engine = pool.match_tags(job.validation, bool=False)
    else:
        engine = pool.exclude(validation.values("id"))
    if engine.count("id") == 0:
        raise PipelineError("the engine has no samples: every sample of 'samples' is a validation sample")
    verified = resolve_view(dataset, job.finetune_view, "finetune_view") if job.finetune_view else None
    return Views(engine, validation, verified)


class Pipeline:
    """One run of a pipeline over ``dataset`` (see the module docstring)."""

    def __init__(self, dataset: Any, job: PipelineJob, *, progress: Progress | None,
                 say: Callable[[str], None]) -> None:
        self.dataset, self.job, self.progress, self.say = dataset, job, progress, say
        self.names = Names(job.prefix, job.output_dir)
        self.plan = job.plan()
        self.start = job.model_spec()
        self.record: runs.RunRecord | None = None
        self._loaded: tuple[Any, Any] | None = None  # the last tagger loaded and its spec (see _load)

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self) -> PipelineResult:
        scope = f"pipeline:{self.dataset._doc.id}:{self.job.prefix}"
        with claims.Holder() as holder:
            with claims.dataset_lock(f"{self.dataset.name}/pipeline/{self.job.prefix}", holder):
                busy = claims.other_workers(scope, holder)
                if busy:
                    where = ", ".join(f"pid {d.get('pid')} on {d.get('host')}" for d in busy)
                    raise PipelineError(f"pipeline '{self.job.prefix}' is running elsewhere ({where}): wait for it "
                                        f"to end")
                self.views = views_of(self.dataset, self.job)
                self.record = self._begin()
                claims.join(scope, holder)
            try:
                return self._steps()
            finally:
                claims.leave(scope, holder)

    def _begin(self) -> runs.RunRecord:
        """Check everything that can be checked, then create or take up the pipeline's record."""
        job, record = self.job, runs.load(self.dataset, KIND, self.job.prefix)
        spec = job.to_spec()
        if record is None:
            if job.resume:
                raise PipelineError(f"nothing to resume: dataset '{self.dataset.name}' has no pipeline "
                                    f"'{job.prefix}' (start it without resume)")
            self._check_inputs()
            self._check_free(range(job.rounds + 1))
            record = runs.RunRecord(KIND, job.prefix, spec, inputs=self._inputs(),
                                    outputs={"fields": [], "model_folders": [], "views": [], "evaluations": []},
                                    details={"steps": {}, "published": None, "undone": []})
        else:
            if not job.resume:
                raise PipelineError(_refusal(record, self.dataset.name))
            if record.details.get("undone"):
                raise PipelineError(f"round {record.details['undone'][-1]} of pipeline '{job.prefix}' was undone: "
                                    f"its fields stay for you to inspect; run the pipeline again under another "
                                    f"prefix")
            changed = sorted(k for k in set(spec) | set(record.settings)
                             if k not in RESUMABLE_CHANGES and spec.get(k) != record.settings.get(k))
            if changed:
                raise PipelineError(f"cannot resume pipeline '{job.prefix}' with other settings ({', '.join(changed)} "
                                    f"changed): use the spec it was started with (more rounds and another review "
                                    f"mode are allowed)")
            self._check_inputs()
            started = {int(key[1:].split(":")[0]) for key in record.details.get("steps", {})}
            self._check_free(range(max(started, default=-1) + 1, job.rounds + 1))
            record.settings = spec
        record.ended(runs.RUNNING)
        runs.save(self.dataset, record)
        return record

    def _steps(self) -> PipelineResult:
        record = self.record
        steps = record.details.setdefault("steps", {})
        todo = [step for step in self.plan if steps.get(_key(*step), {}).get("status") != runs.COMPLETED]
        done = len(self.plan) - len(todo)
        try:
            for number, stage in todo:
                key = _key(number, stage)
                entry = steps.setdefault(key, {})
                entry.update(status=runs.RUNNING, started_at=runs.now())
                record.details["current"] = key
                runs.save(self.dataset, record)
                self.say(f"pipeline '{self.job.prefix}': round {number} {stage}")
                outcome = getattr(self, f"_{stage}")(number, self._sub(done, stage, number))
                if outcome == WAITING:
                    return self._wait(number, entry)
                entry.update(status=runs.COMPLETED, ended_at=runs.now(), **(outcome or {}))
                runs.save(self.dataset, record)
                done += 1
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
            status = runs.INTERRUPTED if interrupted else runs.FAILED
            entry = steps.get(record.details.get("current"), {})
            entry["status"] = status
            runs.save(self.dataset, record.ended(status, exc))
            raise
        record.details.pop("current", None)
        runs.save(self.dataset, record.ended(runs.COMPLETED))
        if self.progress is not None:
            self.progress(1.0, f"pipeline '{self.job.prefix}' done")
        return self.result()

    def _wait(self, number: int, entry: dict[str, Any]) -> PipelineResult:
        review = self.names.review(number)
        line = (f"waiting for the review of round {number}: mark the flagged tags of '{review}' keep or remove "
                f"in the App's Tag review panel (field '{self.names.labels(number)}'), then run the pipeline again "
                f"with resume (fiftyone-ram pipeline run SPEC --resume)")
        entry.update(status=runs.INTERRUPTED, waiting=True)
        runs.save(self.dataset, self.record.ended(runs.INTERRUPTED, line))
        self.say(line)
        return self.result(waiting=line)

    def result(self, waiting: str | None = None) -> PipelineResult:
        from fiftyone_ram.pipeline.report import rows_of

        record = self.record
        figure = record.figures[0] if record.figures else None
        return PipelineResult(self.dataset.name, self.job.prefix, record.status, record.details.get("published"),
                              waiting, rows_of(self.dataset, self.job.prefix), figure)

    def _sub(self, done: int, stage: str, number: int) -> Progress | None:
        """A stage's progress as a part of the whole run's."""
        if self.progress is None:
            return None
        total = len(self.plan)

        def report(fraction: float, label: str) -> None:
            self.progress((done + min(max(fraction, 0.0), 1.0)) / total, f"round {number} {stage}: {label}")

        report(0.0, "started")
        return report

    # -- checks before anything is written --------------------------------------------------------------------
    def _check_inputs(self) -> None:
        from fiftyone_ram.fields import TAG_LABEL_TYPES, field_kind

        job, dataset = self.job, self.dataset
        for name, what in ((job.tag_field, "tag_field"), (job.reference_field, "reference_field"),
                           (job.truth_field, "validation_field"), (job.finetune_field, "finetune_field")):
            if name is None:
                continue
            try:
                field_kind(dataset, name, TAG_LABEL_TYPES, what.replace("_", " "), allow_strings=True)
            except ValueError as exc:
                raise PipelineError(f"{what}: {exc}") from None
        if job.caption_field is not None:
            import fiftyone.core.fields as fof

            found = dataset.get_field(job.caption_field)
            text = isinstance(found, fof.StringField) or (isinstance(found, fof.ListField)
                                                          and isinstance(found.field, fof.StringField))
            if not text:
                kind = "no field" if found is None else type(found).__name__
                raise PipelineError(f"caption_field: '{job.caption_field}' holds {kind}; expected a string or a "
                                    f"list of strings")
        if self.views.validation.exists(job.truth_field).count("id") == 0:
            raise PipelineError(f"no validation sample has '{job.truth_field}' set: the models cannot be scored")

    def _check_free(self, numbers: range) -> None:
        """Refuse names a new round would write that exist (fields, saved views, evaluation keys, folders)."""
        names, dataset = self.names, self.dataset
        for number in numbers:
            fields = [names.labels(number), names.predictions(number)]
            fields += [names.review(number), names.cleaned(number)] if number else [names.current]
            taken = [f for f in fields if dataset.get_field(f) is not None]
            if dataset.has_saved_view(names.flagged_view(number)):
                taken.append(f"saved view {names.flagged_view(number)}")
            if names.eval_key(number) in dataset.list_evaluations():
                taken.append(f"evaluation {names.eval_key(number)}")
            folders = [names.folder(number, s) for s in TRAINING_STAGES]
            taken += [str(f) for f in folders if f.is_dir() and any(f.iterdir())]
            if taken:
                raise PipelineError(f"the pipeline '{names.prefix}' would write {', '.join(taken[:4])}, which already "
                                    f"exist{'s' if len(taken) == 1 else ''}: choose another prefix or output folder")

    def _inputs(self) -> dict[str, Any]:
        job = self.job
        return {"fields": [f for f in (job.caption_field, job.tag_field, job.reference_field, job.truth_field,
                                       job.finetune_field) if f],
                "views": {"samples": job.samples, "validation": job.validation, "verified": job.finetune_view},
                "model": self.start.to_dict()}

    def _output(self, kind: str, *values: str) -> None:
        listed = self.record.outputs.setdefault(kind, [])
        listed.extend(v for v in values if v not in listed)

    # -- models -------------------------------------------------------------------------------------------------
    def _folder_spec(self, folder: Path):
        """A model folder the pipeline wrote, run as the starting model runs (device, precision, batch)."""
        return self.start.replace(model=str(folder), checkpoint=None, family=None, tag_list=None,
                                  tag_list_chinese=None, thresholds=None, tokenizer=None, vocabulary=None,
                                  caption_branch=False)

    def _trained(self, number: int, stage: str):
        """The spec of a training stage's model, or None when the plan does not train it."""
        if (number, stage) not in self.plan:
            return None
        return self._folder_spec(self.names.folder(number, stage))

    def engine_model(self, number: int):
        """The model that generates and cleans round ``number``'s tags: round 1's first training, else the
        previous round's model."""
        if number == 1:
            return self._trained(1, "train") or self.start
        return self.round_model(number - 1)

    def round_model(self, number: int):
        """Round ``number``'s model: its fine-tuned one, else its retrained one, else the one it generated with."""
        if number == 0:
            return self.start
        return self._trained(number, "finetune") or self._trained(number, "retrain") or self.engine_model(number)

    def _load(self, spec):
        """The tagger of ``spec``, loaded once for the stages in a row that use it (a round's generation and
        cleaning, its evaluation and the next round's generation and cleaning): a released model takes seconds
        to load and gigabytes to hold. Only the last one is kept, and none while a model trains."""
        from fiftyone_ram.tagger import load_tagger

        if self._loaded is None or self._loaded[0] != spec:  # specs are frozen dataclasses: equal by value
            self._loaded = None  # the previous model goes before the next one loads
            self._loaded = (spec, load_tagger(spec))
        return self._loaded[1]

    # -- the stages ---------------------------------------------------------------------------------------------
    def _parse(self, number: int, progress: Progress | None) -> dict[str, Any]:
        job, out = self.job, self.names.labels(0)
        generation = job.generation(out_field=out, tag_fields=(job.tag_field,) if job.tag_field else (),
                                    caption_fields=(job.caption_field,) if job.caption_field else (),
                                    overwrite=self.dataset.get_field(out) is not None)
        if not self._finished("generate", out):
            self._output("fields", out)
            runs.save(self.dataset, self.record)
            generation.run(self.views.engine, progress=progress)
        from fiftyone_ram.pipeline.provenance import stamp_generated

        added = stamp_generated(self.views.engine, out, None, 0)
        return {"record": runs.run_key("generate", out), "added": dict(added)}

    def _generate(self, number: int, progress: Progress | None) -> dict[str, Any]:
        from fiftyone_ram.pipeline.provenance import stamp_generated

        out = self.names.labels(number)
        previous = self.names.labels(number - 1)
        previous = previous if self.dataset.get_field(previous) is not None else None
        generation = self.job.generation(out_field=out, tag_fields=(previous,) if previous else (),
                                         overwrite=self.dataset.get_field(out) is not None)
        if not self._finished("generate", out):
            self._output("fields", out)
            runs.save(self.dataset, self.record)
            tagger = self._load(self.engine_model(number))
            captioner = self.job.captioner_spec()
            if captioner == "model":
                captioner = tagger if tagger.can_caption else None
            elif captioner is not None:
                captioner = self._load(captioner)
            generation.run(self.views.engine, tagger, captioner, progress=progress)
        added = stamp_generated(self.views.engine, out, previous, number)
        return {"record": runs.run_key("generate", out), "added": dict(added)}

    def _clean(self, number: int, progress: Progress | None) -> dict[str, Any]:
        field_ = self.names.labels(number)
        previous = runs.load(self.dataset, "clean", field_)
        if previous is None or not previous.finished:
            cleaning = self.job.cleaning(tag_field=field_, resume=previous is not None)
            self._output("fields", self.names.review(number), self.names.cleaned(number))
            self._output("views", self.names.flagged_view(number))
            runs.save(self.dataset, self.record)
            cleaning.check(self.views.engine)
            tagger = self._load(self.engine_model(number)) if cleaning.needs_tagger else None
            cleaning.run(self.views.engine, tagger, progress=progress)
        return {"record": runs.run_key("clean", field_)}

    def _review(self, number: int, progress: Progress | None) -> dict[str, Any] | str:
        from fiftyone_ram.engine.review import ReviewJob
        from fiftyone_ram.pipeline.provenance import stamp_review

        field_, review = self.names.labels(number), self.names.review(number)
        if self.dataset.get_field(review) is None:  # nothing was cleaned
            return {"removed": 0, "kept": 0}
        entry = self.record.details["steps"][_key(number, "review")]
        if self.job.review == "wait" and not entry.get("waiting"):
            from fiftyone_ram.engine.review_marks import flagged_rows

            if flagged_rows(self.views.engine, review, limit=1):  # nothing flagged: nothing to wait for
                return WAITING
        if self.job.review == "auto":
            self._mark_kept(review)
        applied = ReviewJob(tag_field=field_, accept="flagged").run(self.views.engine)
        counts = stamp_review(self.views.engine, field_, review, number)
        if progress is not None:
            progress(1.0, f"removed {applied['removed']} tag(s)")
        return {"record": runs.run_key("review", field_), "removed": counts["removed"], "kept": counts["kept"]}

    def _mark_kept(self, review: str) -> None:
        """The automatic rule: flagged tags whose removal it does not accept are marked ``keep`` (as a reviewer
        would in the App); tags a person marked keep their mark."""
        from fiftyone_ram.engine.review_marks import MARKS, mark

        keep = []
        for value in self.views.engine.values(review):
            for label in value.classifications if value is not None else ():
                reason = label["flag_reason"] if label.has_field("flag_reason") else None
                if reason is None or set(label.tags or ()) & set(MARKS):
                    continue
                score = label["flag_score"] if label.has_field("flag_score") else None
                if not self.job.accepts(reason, score):
                    keep.append(label.id)
        if keep:
            mark(self.dataset, review, keep, "keep")

    def _train(self, number: int, progress: Progress | None) -> dict[str, Any]:
        return self._training(number, "train", progress)

    def _retrain(self, number: int, progress: Progress | None) -> dict[str, Any]:
        return self._training(number, "retrain", progress)

    def _finetune(self, number: int, progress: Progress | None) -> dict[str, Any]:
        return self._training(number, "finetune", progress)

    def _training(self, number: int, stage: str, progress: Progress | None) -> dict[str, Any]:
        from fiftyone_ram.training import resume
        from fiftyone_ram.training.job import FinetuneJob
        from fiftyone_ram.training.output import is_busy

        job, names = self.job, self.names
        self._loaded = None  # training holds a model of its own: the inference one goes first
        settings = job.training(stage)
        folder = names.folder(number, stage)
        if stage == "train":
            tag_field, model = names.labels(0), self.start
        elif stage == "retrain":
            tag_field = names.labels(number)
            model = self.start if job.retrain_from == "start" else self.engine_model(number)
        else:
            tag_field = job.finetune_field or names.labels(number)
            model = self._trained(number, "retrain") or self.engine_model(number)
        resuming = resume.exists(folder / resume.RESUME_DIR)
        finetune = FinetuneJob(output_dir=str(folder), tag_field=tag_field,
                               caption_field=job.caption_field if settings.captions else None,
                               validation_field=job.truth_field, parser_tags=job.parser_tags,
                               weak_start=settings.weak_start, changes=settings.changes, resume=resuming,
                               overwrite=not resuming and is_busy(folder))
        target = names.training(number, stage)
        record = runs.RunRecord("finetune", target, {**finetune.to_dict(), "processes": settings.processes},
                                inputs={"fields": [tag_field, job.truth_field], "model": model.to_dict(),
                                        "samples": "verified" if stage == "finetune" else "engine"},
                                outputs={"model_folder": str(folder)})
        earlier = runs.load(self.dataset, "finetune", target)
        if earlier is not None and earlier.finished and _finished_folder(folder):
            return {"record": earlier.key, "model_folder": str(folder), "best": earlier.details.get("best")}
        if earlier is not None:
            record.run_id, record.started_at = earlier.run_id, earlier.started_at
        self._output("model_folders", str(folder))
        runs.save(self.dataset, self.record)
        runs.save(self.dataset, record)
        try:
            if _finished_folder(folder):  # trained, killed before it was recorded
                best = json.loads((folder / _info_file()).read_text()).get("best")
            elif settings.processes > 1:
                best = self._launch(number, stage, finetune, model, settings.processes)
            else:
                samples = self.views.verified if stage == "finetune" else self.views.engine
                result = finetune.run(samples, model, validation=self.views.validation, progress=progress or False,
                                      messages=self.say)
                best = result.best
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
            runs.save(self.dataset, record.ended(runs.INTERRUPTED if interrupted else runs.FAILED, exc))
            raise
        record.details["best"] = best
        runs.save(self.dataset, record.ended(runs.COMPLETED))
        return {"record": record.key, "model_folder": str(folder), "best": best}

    def _launch(self, number: int, stage: str, finetune: Any, model: Any, processes: int) -> dict[str, Any] | None:
        """The training under ``torchrun`` (DDP): ``processes`` processes of :mod:`fiftyone_ram.pipeline.launch`,
        each rebuilding the same views from the spec; the main one writes the folder."""
        payload = {"spec": self.job.to_spec(), "stage": stage, "finetune": finetune.to_dict(),
                   "model": model.to_dict()}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(payload, f)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "fiftyone_ram.pipeline.launch", f.name]
        last = "(no output)"
        try:
            with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
                for line in process.stderr:  # the processes' messages, passed on as they come
                    if line.strip():
                        last = line.strip()
                        self.say(last)
        finally:
            Path(f.name).unlink(missing_ok=True)
        if process.returncode != 0:
            raise PipelineError(f"round {number} {stage} under torchrun failed (exit {process.returncode}): {last}")
        info = self.names.folder(number, stage) / _info_file()
        return json.loads(info.read_text()).get("best") if info.is_file() else None

    def _evaluate(self, number: int, progress: Progress | None) -> dict[str, Any]:
        from fiftyone_ram.driver.tagging import TagJob
        from fiftyone_ram.evaluation.run import evaluate_tags
        from fiftyone_ram.fiftyone.model import from_tagger
        from fiftyone_ram.training.validation import summary_of

        names, validation = self.names, self.views.validation
        pred, key = names.predictions(number), names.eval_key(number)
        evaluation = self.job.evaluation(pred_field=pred, gt_field=self.job.truth_field, eval_key=key)
        self._output("fields", pred)
        self._output("evaluations", key)
        runs.save(self.dataset, self.record)
        tagger = self._load(self.round_model(number))
        tagged = runs.load(self.dataset, "tag", pred) is not None and self.dataset.get_field(pred) is not None
        TagJob(label_field=pred, store_logits=True, resume=tagged).run(validation, from_tagger(tagger),
                                                                      progress=progress or False)
        results = evaluate_tags(validation, job=evaluation, model_tags=tagger)
        return {"evaluation": key, "validation": summary_of(results)}

    def _publish(self, number: int, progress: Progress | None) -> dict[str, Any]:
        """The round's tags become the current tags (``<prefix>``), its row joins the report, the figure is
        drawn again."""
        from fiftyone_ram.pipeline.report import draw, merge, round_row

        names, engine = self.names, self.views.engine
        made = [k for k in range(number, -1, -1) if self.dataset.get_field(names.labels(k)) is not None]
        source = names.labels(made[0]) if made else None  # a round that made no tags publishes the last one's
        published = self.record.details.get("published")
        if source is not None:
            allowed = [names.labels(published)] if published is not None else []
            _check_untouched(engine, names.current, allowed + [source])
            engine.set_values(names.current, [v.copy() if v is not None else None for v in engine.values(source)],
                              dynamic=True)
            self._output("fields", names.current)
        self.record.details["published"] = number
        row = round_row(self.dataset, self.job, self.record, engine, number)
        rows = merge(runs.load_state(self.dataset, KIND, self.job.prefix).get("rows") or [], row)
        runs.save_state(self.dataset, KIND, self.job.prefix, rows=rows)
        try:
            figure = draw(rows, names.figure)
            self.record.figures = [str(figure)]
        except OSError as exc:  # a figure that cannot be written does not stop the rounds
            self.say(f"could not write the report figure {names.figure}: {exc}")
        return {"published": source}

    def _finished(self, kind: str, target: str) -> bool:
        record = runs.load(self.dataset, kind, target)
        return record is not None and record.finished and self.dataset.get_field(target) is not None


def _key(number: int, stage: str) -> str:
    return f"r{number}:{stage}"


def _info_file() -> str:
    from fiftyone_ram.model_folder import INFO_FILE

    return INFO_FILE


def _finished_folder(folder: Path) -> bool:
    """Whether a training wrote its model folder to the end (its info says finished)."""
    from fiftyone_ram.model_folder import MODEL_FILE

    info = folder / _info_file()
    if not (folder / MODEL_FILE).is_file() or not info.is_file():
        return False
    try:
        return bool(json.loads(info.read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def _names_per_sample(samples: Any, field_: str) -> list[list[str]]:
    if samples.get_field(field_) is None:
        return [[] for _ in range(samples.count("id"))]
    return [sorted(row or []) for row in samples.values(f"{field_}.classifications.label")]


def _check_untouched(samples: Any, current: str, allowed: list[str]) -> None:
    """The current tags are, sample by sample, what the pipeline put there (one of the ``allowed`` fields' tags,
    or nothing yet): else someone changed them, and they are not replaced."""
    if samples.get_field(current) is None:
        return
    mine = _names_per_sample(samples, current)
    options = [_names_per_sample(samples, name) for name in allowed if name]
    changed = sum(1 for i, tags in enumerate(mine) if tags and not any(tags == o[i] for o in options))
    if changed:
        raise PipelineError(f"'{current}' was changed since the pipeline wrote it ({changed} sample(s) differ): "
                            f"copy your changes to another field and restore it, or run under another prefix")


def _refusal(record: runs.RunRecord, dataset: str) -> str:
    published = record.details.get("published")
    done = "no round published" if published is None else f"round {published} published"
    return (f"dataset '{dataset}' already has a pipeline '{record.target}' ({record.status}, {done}): pass resume "
            f"(CLI: --resume) to continue it, or choose another prefix")


def undo(dataset: Any, prefix: str, number: int | None = None) -> dict[str, Any]:
    """Undo round ``number`` (default: the last one published) of pipeline ``prefix``: the current tags
    (``<prefix>``) become round ``number - 1``'s again. Nothing is deleted: the round's fields and model folder
    stay for inspection. Only the last round published can be undone, and only while ``<prefix>`` still holds
    what the pipeline published."""
    if isinstance(dataset, str):
        import fiftyone as fo

        if not fo.dataset_exists(dataset):
            raise PipelineError(f"no FiftyOne dataset named {dataset!r}")
        dataset = fo.load_dataset(dataset)
    record = runs.load(dataset, KIND, prefix)
    if record is None:
        raise PipelineError(f"dataset '{dataset.name}' has no pipeline '{prefix}'")
    published = record.details.get("published")
    number = published if number is None else number
    if published is None or number != published:
        raise PipelineError(f"only the last round published can be undone (round {published}), not round {number}")
    if number == 0:
        raise PipelineError("round 0 is where the pipeline starts: there is no earlier round to restore (delete "
                            f"the field '{prefix}' instead if you no longer want it)")
    scope = f"pipeline:{dataset._doc.id}:{prefix}"
    names = Names(prefix, record.settings.get("output_dir", "."))
    job = load_spec(record.settings)
    with claims.Holder() as holder:
        if claims.other_workers(scope, holder):
            raise PipelineError(f"pipeline '{prefix}' is running: undo a round once it has stopped")
        engine = views_of(dataset, job).engine
        steps = record.details.get("steps", {})
        _check_untouched(engine, names.current, [steps.get(_key(number, "publish"), {}).get("published")])
        previous = steps.get(_key(number - 1, "publish"), {}).get("published")
        if previous is None or dataset.get_field(previous) is None:
            raise PipelineError(f"round {number - 1}'s tags are gone (field {previous!r}): nothing to restore")
        engine.set_values(names.current, [v.copy() if v is not None else None for v in engine.values(previous)],
                          dynamic=True)
        record.details["published"] = number - 1
        record.details["undone"] = sorted(set(record.details.get("undone") or []) | {number})
        runs.save(dataset, record)
    return {"prefix": prefix, "undone": number, "current": names.current, "restored_from": previous}
