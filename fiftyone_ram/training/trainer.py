"""``finetune``: fine-tune RAM, RAM++ or Tag2Text on a FiftyOne view, as upstream's ``finetune.py`` does.

The loop: examples from the view (``data``), upstream's objective (``objective``), AdamW over the trainable
parts with the recipe's schedule (``settings``, ``schedule``), the CLIP teacher when there is one
(``teacher``), per-epoch validation through ``evaluate_tags`` (``validation``), the best epoch written as a
model folder (``fiftyone_ram.model_folder``), a resumable state every N steps (``resume``) and DDP under
torchrun (``distributed``). See docs/training.md.

A run holds its output folder's lock (``output``) from start to end, checks everything it can before it writes
anything (:meth:`_Run.preflight`), stops in one line when training diverges (a non-finite loss or weight), and
never ends without a model in the folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fiftyone_ram.errors import UserError
from fiftyone_ram.hardware import resolve_precision
from fiftyone_ram.model_folder import INFO_FILE, MODEL_FILE, WriteError, write_atomically, write_failure, \
    write_model_folder
from fiftyone_ram.models.registry import DEFAULT_VARIANT
from fiftyone_ram.training import data as D
from fiftyone_ram.training import distributed, resume
from fiftyone_ram.training.output import LOG_FILE, OutputFolderError, OutputLock, check_log, clear, is_busy
from fiftyone_ram.training.objective import total_loss, training_losses
from fiftyone_ram.upstream import CAPTION_PROMPT
from fiftyone_ram.training.progress import ConsoleProgress, Progress, resolve_progress
from fiftyone_ram.training.schedule import build_scheduler
from fiftyone_ram.training.settings import FinetuneSettings
from fiftyone_ram.training.transforms import teacher_transform, training_transform

#: Settings that may differ between a run and its resumption (they do not change what is computed).
_RESUMABLE_CHANGES = ("num_workers", "log_every", "checkpoint_every", "max_steps", "early_stop")


class FinetuneError(UserError, RuntimeError):
    """A fine-tuning run that cannot start or continue; the message says why and what to do."""


@dataclass
class FinetuneResult:
    """What a run did. ``history``: one entry per validated epoch (``epoch`` -1: before training); ``tagger``:
    the model as training left it (eval mode; the folder holds the best epoch's, the same without validation).
    ``model_epoch``: the epoch whose model the folder holds (the best one, else the last one)."""

    output_dir: Path
    steps: int
    epochs: int
    best_epoch: int | None
    best: dict[str, float | None] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    tagger: Any = None
    model_epoch: int | None = None


def finetune(samples: Any, output_dir: str | Path, *, model: Any = DEFAULT_VARIANT, tag_field: str | None = None,
             caption_field: str | None = None, validation: Any = None, validation_field: str | None = None,
             mapping: Any = None, caption_parser: Any = None, settings: FinetuneSettings | None = None,
             resume_run: bool = False, overwrite: bool = False, progress: bool | Progress | None = True,
             messages: Callable[[str], None] | None = None, **options: Any) -> FinetuneResult:
    """Fine-tune a tagger on ``samples`` (a FiftyOne dataset or view) and write the result to ``output_dir``.

    The model: ``model`` is a :class:`~fiftyone_ram.tagger_spec.TaggerSpec`, or what ``load_tagger`` takes (a
    released variant, a config, a model folder) with the spec's other fields among ``options`` (``checkpoint``,
    ``family``, ``tag_list``, ``thresholds``, ``device``...; a vocabulary as ``vocabulary=`` or its fields
    ``tags``, ``descriptions``...: new tags keep their CLIP queries, frozen, and the model learns to score them).
    Targets: ``tag_field`` (any field ``evaluate_tags`` accepts as ground truth, names mapped with ``mapping`` as
    there) and/or ``caption_field`` (a string or list of strings; parsed into tags with ``caption_parser``,
    default: one over the model's tag list). ``validation``: a view scored after every epoch with
    ``evaluate_tags``; the best epoch is kept and per-class thresholds are tuned on it. Its ground truth is
    ``validation_field`` when given (clean labels of the validation samples, in a field other than the noisy
    training tags), else what training reads (``tag_field``, else the tags parsed from ``caption_field``).

    ``settings`` or the other keyword ``options``: see :class:`~fiftyone_ram.training.settings.FinetuneSettings`
    (upstream's recipe by default). ``resume_run``: continue the interrupted run in ``output_dir``;
    ``overwrite``: replace a previous run's files in a non-empty ``output_dir`` (a user's other files stay).
    ``progress``: a console line (True), nothing, or ``callable(fraction, label)``. ``messages``: where notes
    go (default: stderr). A second run into a folder in use is refused (the lock names its holder).
    """
    from fiftyone_ram.tagger_spec import TaggerSpec
    from fiftyone_ram.vocabulary.spec import VocabularySpec

    # A name both take (batch_size) is the training setting; the weights train in fp32 (precision= is refused
    # with a pointer to train_precision).
    trained = {f.name for f in dataclasses.fields(FinetuneSettings)}
    spec_fields = {k: options.pop(k) for k in TaggerSpec.names()
                   if k in options and k not in trained | {"model", "precision"}}
    flat = {k: options.pop(k) for k in VocabularySpec.names() if k in options}
    if flat:
        spec_fields["vocabulary"] = VocabularySpec.of(flat)
    spec = TaggerSpec.of(model, **spec_fields)
    settings = (settings or FinetuneSettings()).with_changes(**options)
    world, device_ = distributed.start(spec.device)
    say = _messenger(messages, world)
    run = None
    try:
        run = _Run(samples, Path(output_dir), settings, world, device_, say, resolve_progress(progress)
                   if world.is_main else None)
        run.prepare(spec, tag_field=tag_field, caption_field=caption_field, validation=validation,
                    validation_field=validation_field, mapping=mapping, caption_parser=caption_parser,
                    resume_run=resume_run, overwrite=overwrite)
        return run.train()
    finally:
        if run is not None:
            run.release()
        distributed.stop(world)


class _Objective(nn.Module):
    """The tagger's objective as a module, so that DDP sees a forward (its gradient hooks need one)."""

    def __init__(self, tagger: Any) -> None:
        super().__init__()
        self.model = tagger.model
        self._tagger = (tagger,)  # not a submodule: only the model's parameters belong to the objective

    def forward(self, pixel_values: torch.Tensor, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return training_losses(self._tagger[0], pixel_values, **inputs)


class _Run:
    def __init__(self, samples: Any, output: Path, settings: FinetuneSettings, world: distributed.World,
                 device: torch.device, say: Callable[[str], None], progress: Progress | None) -> None:
        self.samples, self.output, self.settings = samples, output, settings
        self.world, self.device, self.say, self.progress = world, device, say, progress
        self.resume_dir = output / resume.RESUME_DIR
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_epoch: int | None = None
        self.stale_epochs = 0
        self.epoch, self.done_in_epoch, self.step = 0, 0, 0
        self.validation = None
        self.validation_precision = "fp32"  # resolved in preflight when there is a validation view
        self.model_epoch: int | None = None  # the epoch whose model the folder holds
        self.resumed = False
        self.lock = OutputLock(output) if world.is_main else None

    # -- setting up -------------------------------------------------------------------------------------------
    def prepare(self, spec: Any, *, tag_field: str | None, caption_field: str | None,
                validation: Any, validation_field: str | None, mapping: Any, caption_parser: Any,
                resume_run: bool, overwrite: bool) -> None:
        """Lock the folder, check everything, and only then clear a previous run's files and set up."""
        s = self.settings
        self._lock()
        self._check_output(resume_run, overwrite)
        self.preflight(spec, tag_field=tag_field, caption_field=caption_field, validation=validation,
                       validation_field=validation_field, mapping=mapping, caption_parser=caption_parser)
        tagger = self.tagger
        self._freeze()
        if s.grad_checkpointing:
            tagger.model.set_grad_checkpointing(True)
        self.objective = _Objective(tagger)
        self.trainer: nn.Module = self.objective
        if self.world.distributed:
            self.trainer = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False)
        self.optimizer = self._optimizer()
        world = self.world.size
        self.micro_batches = D.batches_per_epoch(len(self.examples), s.batch_size, world)
        self.steps_per_epoch = -(-self.micro_batches // s.grad_accumulation)
        self.total_steps = self.steps_per_epoch * s.epochs
        self.scheduler = build_scheduler(self.optimizer, schedule=s.schedule, min_lr=s.min_lr,
                                         steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                                         epochs=s.epochs, warmup_steps=s.warmup_steps)
        size = tagger.image_size
        augment = dict(scale=s.crop_scale, flip=s.flip, rand_augment=s.rand_augment)
        self.dataset = D.TrainingImages(
            self.examples, training_transform(size, normalization=s.normalization, **augment),
            teacher_transform(s.teacher_image_size, **augment) if self.teacher is not None else None, seed=s.seed)
        self.fingerprint = self._fingerprint(mapping)
        if resume_run:
            self._resume()
        else:
            self._clear()
        self.has_validation = validation is not None
        if validation is not None and self.world.is_main:
            from fiftyone_ram.training.validation import Validation

            self.validation = Validation.prepare(validation, **self.validation_truth,
                                                 parser=self.parser, mapping=mapping)
        self.log_path = self.output / LOG_FILE

    def preflight(self, spec: Any, *, tag_field: str | None, caption_field: str | None,
                  validation: Any, mapping: Any, caption_parser: Any, validation_field: str | None = None) -> None:
        """Every check of the data and the model, before anything is written: the fields' kinds, the model,
        training samples with labels in the vocabulary, a validation view that can be scored, the teacher."""
        from fiftyone_ram.tagger import load_tagger
        from fiftyone_ram.training.validation import check_ground_truth

        D.check_fields(self.samples, tag_field, caption_field)
        # The validation view's ground truth: its own field, else what training reads.
        self.validation_truth = ({"tag_field": validation_field, "caption_field": None} if validation_field
                                 else {"tag_field": tag_field, "caption_field": caption_field})
        if validation is not None:
            D.check_fields(validation, **self.validation_truth)
        _seed_everything(self.settings.seed + self.world.rank)
        self.tag_field, self.caption_field = tag_field, caption_field
        # Training keeps its weights in fp32 (bf16 runs as autocast over them): never the inference default.
        self.spec = spec
        self.tagger = load_tagger(spec, device=str(self.device), precision="fp32",
                                  caption_branch=caption_field is not None)
        tagger = self.tagger
        self.base_thresholds = np.asarray(tagger.thresholds, np.float32).copy()
        self.parser = _parser(caption_parser, tagger.tag_list) if caption_field is not None else None
        self.examples = D.read_examples(self.samples, tagger.tag_list, tag_field=tag_field,
                                        caption_field=caption_field, mapping=mapping, parser=self.parser)
        D.check_examples(self.examples, tag_field=tag_field, caption_field=caption_field)
        self.validation_examples, self.validation_ids = None, None
        if validation is not None:
            # the precision validation tags at, checked now (int8 on a GPU fails here, not after an epoch)
            self.validation_precision = resolve_precision(self.settings.validation_precision, self.device)
            self.validation_ids = list(validation.values("id"))
            self.validation_examples = check_ground_truth(validation, tagger.tag_list, **self.validation_truth,
                                                          parser=self.parser, mapping=mapping)
        unmapped = self.examples.report.get("unmapped") or {}
        if unmapped:
            shown = ", ".join(f"{n!r} ({c})" for n, c in sorted(unmapped.items(), key=lambda x: -x[1])[:10])
            self.say(f"{len(unmapped)} tag name(s) of '{tag_field}' are not in the model's vocabulary and are not "
                     f"trained: {shown}{' ...' if len(unmapped) > 10 else ''} (map them with mapping= / --mapping, "
                     f"or add them as new tags with tags= / --tags)")
        if self.examples.report["left_out"]:
            self.say(f"{self.examples.report['left_out']} sample(s) without labels or captions are left out")
        self.teacher = self._teacher(tagger.family, has_captions=caption_field is not None)

    def _lock(self) -> None:
        """The main process locks the output folder for the whole run; every process learns if it could not."""
        refused = None
        if self.lock is not None:
            try:
                self.lock.acquire()
            except OutputFolderError as exc:
                refused = str(exc)
        refused = self.world.broadcast(refused)
        if refused:
            raise OutputFolderError(refused)

    def release(self) -> None:
        """However the run ended: its temporary validation fields go, then the folder's lock."""
        try:
            if self.validation is not None:
                self.validation.cleanup()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _check_output(self, resume_run: bool, overwrite: bool) -> None:
        """What the folder holds allows this run (read only: a previous run's files are cleared later)."""
        if resume_run:
            if not resume.exists(self.resume_dir):
                raise FinetuneError(f"nothing to resume in {self.output}: it has no {resume.RESUME_DIR}/"
                                    f"{resume.STATE_FILE} (start a new run without --resume)")
            return
        if is_busy(self.output) and not overwrite:
            raise FinetuneError(f"the output folder {self.output} is not empty: pass overwrite (--overwrite) to "
                                f"replace its model files, or resume (--resume) to continue the run in it")
        check_log(self.output)

    def _clear(self) -> None:
        """A previous run's files go (overwrite); the user's other files stay, and are named."""
        self.world.barrier()  # every process has looked before the main one clears anything
        if self.world.is_main and is_busy(self.output):
            kept = clear(self.output)
            if kept:
                self.say(f"overwrite: removed the previous run's files from {self.output}, kept {len(kept)} "
                         f"other(s): {', '.join(kept[:8])}{' ...' if len(kept) > 8 else ''}")
        self.world.barrier()

    def _teacher(self, family: str, *, has_captions: bool):
        from fiftyone_ram.training.teacher import TeacherError, load_teacher

        source = self.settings.teacher
        if family == "tag2text" or source is None:
            return None
        try:
            teacher = load_teacher(source, with_text=family == "ram_plus" and has_captions, device=self.device)
        except TeacherError as exc:
            if Path(source).expanduser().exists():  # the user's own file or folder: not a note, an error
                raise FinetuneError(f"{exc} (teacher= / --teacher: give a CLIP model folder, or teacher=None / "
                                    f"--no-teacher)") from None
            off = "distillation" + (" and alignment are" if family == "ram_plus" else " is")
            self.say(f"{exc}: {off} off for this run (pass a local CLIP folder as teacher= / --teacher, or "
                     f"teacher=None / --no-teacher to silence this)")
            return None
        if teacher.width != self.tagger.config.embed_dim:
            raise FinetuneError(f"the CLIP teacher's features are {teacher.width}-d but the model's image "
                                f"embedding is {self.tagger.config.embed_dim}-d: use a ViT-B/16-sized CLIP")
        return teacher

    def _freeze(self) -> None:
        """requires_grad for every tensor from the settings: frozen parts and the label queries' policy."""
        s, model, family = self.settings, self.tagger.model, self.tagger.family
        train_queries = s.train_label_queries if s.train_label_queries is not None else family == "tag2text"
        self.head_names: set[str] = set()
        for name, param in model.named_parameters():
            part = _part_of(name)
            trainable = part not in s.freeze
            if name.startswith("label_embed"):
                trainable = train_queries and "tagging_head" not in s.freeze
            param.requires_grad_(trainable)
            if part in ("tagging_head", "projection"):
                self.head_names.add(name)
        if not any(p.requires_grad for p in model.parameters()):
            raise FinetuneError("every part of the model is frozen: nothing to train")

    def _optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        head, rest = [], []
        for name, param in self.tagger.model.named_parameters():
            if param.requires_grad:
                (head if name in self.head_names and s.head_lr is not None else rest).append(param)
        groups = [{"params": rest, "lr": s.lr}] if rest else []
        if head:
            groups.append({"params": head, "lr": s.head_lr})
        return torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay)

    def _fingerprint(self, mapping: Any) -> dict[str, Any]:
        """Everything that changes what a run computes, by the name a refused resumption shows."""
        from fiftyone_ram.evaluation.mapping import load_mapping

        tagger = self.tagger
        identity = getattr(tagger, "checkpoint", None)
        model = {"config": tagger.config.to_dict(), "checkpoint": getattr(identity, "fingerprint", None),
                 "family": tagger.family}
        loaded = sorted(load_mapping(mapping).items()) if mapping is not None else None
        val = self.validation_examples
        return {
            "model": _digest(model),
            "tag list": _digest(tagger.tag_list),
            "thresholds": _digest(self.base_thresholds.tolist()),
            "tag field": self.tag_field,
            "caption field": self.caption_field,
            "mapping": _digest(loaded),
            "training samples": self.examples.samples_digest(),
            "training labels": self.examples.targets_digest(),
            "validation samples": None if val is None else _digest(self.validation_ids),
            "validation labels": None if val is None else val.targets_digest(),
            "settings": {k: v for k, v in self.settings.to_dict().items() if k not in _RESUMABLE_CHANGES},
            "processes": self.world.size,
        }

    def _resume(self) -> None:
        state, rng = resume.load(self.resume_dir, self.world.rank)
        before = state.get("fingerprint") or {}
        changed = [k for k in self.fingerprint if before.get(k) != self.fingerprint[k]]
        if changed:
            shown = [k if k != "settings" else "settings (" + ", ".join(sorted(
                n for n in set(self.fingerprint[k]) | set(before.get(k) or {})
                if (before.get(k) or {}).get(n) != self.fingerprint[k].get(n))) + ")" for k in changed]
            raise FinetuneError(f"the run in {self.output} was started with another {', '.join(shown)}: resume "
                                f"with the same model, data and settings, or start again with --overwrite")
        try:
            self.tagger.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            for key in ("epoch", "done_in_epoch", "step", "history", "best", "best_epoch", "stale_epochs"):
                setattr(self, key, state[key])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise FinetuneError(f"cannot resume from {self.resume_dir / resume.STATE_FILE}: it does not hold this "
                                f"run's state ({str(exc).splitlines()[0][:200]}); start again with --overwrite"
                                ) from None
        self.model_epoch = state.get("model_epoch", self.best_epoch)
        resume.restore_rng(rng)
        self.resumed = True
        self.say(f"resuming at epoch {self.epoch + 1}, step {self.step} of {self.total_steps}")

    # -- training ---------------------------------------------------------------------------------------------
    def train(self) -> FinetuneResult:
        s = self.settings
        if not self.resumed:
            self._log({"type": "start", "settings": s.to_dict(), "report": self.examples.report,
                       "examples": len(self.examples), "steps_per_epoch": self.steps_per_epoch,
                       "world": self.world.size, "teacher": self.teacher is not None})
            if self.has_validation and s.baseline:
                self._validate(-1)
        stop = self.step >= (s.max_steps or self.total_steps + 1)
        while self.epoch < s.epochs and not stop:
            stop = self._epoch()
            self._end_epoch()
            stop = stop or self._early_stop()
            self.epoch, self.done_in_epoch = self.epoch + 1, 0
            self._save_state()
        return self._finish()

    def _epoch(self) -> bool:
        """One epoch from where the run stands; True when ``max_steps`` ended it early."""
        s, world = self.settings, self.world
        batches = D.epoch_batches(len(self.examples), s.batch_size, self.epoch, s.seed, rank=world.rank,
                                  world=world.size)[self.done_in_epoch:]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=s.num_workers,
            collate_fn=functools.partial(D.collate, num_classes=len(self.tagger.tag_list)),
            generator=torch.Generator())  # its own generator: the global one is the run's (resumable) state
        self.tagger.model.train(self.settings.dropout)  # eval mode: no dropout nor stochastic depth
        started, seen, running = time.monotonic(), 0, None
        pending: list[dict[str, Any]] = []
        for position, batch in enumerate(loader):
            pending.append(batch)
            last = self.done_in_epoch + position + 1 == self.micro_batches
            if len(pending) < s.grad_accumulation and not last:
                continue
            losses = self._step(pending)
            seen += sum(len(b["index"]) for b in pending) * world.size
            self.done_in_epoch += len(pending)
            pending = []
            value = float(sum(v.item() for v in losses.values()))
            if not math.isfinite(value):
                self._diverged(f"the loss is {value}")
            running = value if running is None else 0.9 * running + 0.1 * value
            rate = seen / max(time.monotonic() - started, 1e-9)
            lr = self.optimizer.param_groups[0]["lr"]
            last_step = self.done_in_epoch == self.micro_batches or self.step >= (s.max_steps or self.total_steps + 1)
            if self.step % s.log_every == 0 or last_step:
                self._log({"type": "step", "epoch": self.epoch, "step": self.step, "lr": lr,
                           "losses": {k: v.item() for k, v in losses.items()}, "loss": value,
                           "images_per_s": rate})
            if self.progress is not None:
                self.progress(self.step / max(self._planned_steps(), 1),
                              f"epoch {self.epoch + 1}/{s.epochs} step {self.step}/{self._planned_steps()} "
                              f"loss {running:.4g} lr {lr:.3g} {rate:.2f} img/s")
            if s.checkpoint_every and self.step % s.checkpoint_every == 0 and self.done_in_epoch < self.micro_batches:
                self._save_state()
            if s.max_steps is not None and self.step >= s.max_steps:
                return True
        return False

    def _planned_steps(self) -> int:
        return min(self.total_steps, self.settings.max_steps or self.total_steps)

    def _step(self, micro_batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """One optimizer step over accumulated micro-batches; returns the first micro-batch's losses."""
        s = self.settings
        family = self.tagger.family
        weak = self.step < s.bce_warmup_steps
        tag_loss = ({"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0} if weak else
                    {"gamma_neg": s.gamma_neg, "gamma_pos": s.gamma_pos, "clip": s.clip})
        first = None
        for i, batch in enumerate(micro_batches):
            inputs = self._inputs(batch, tag_loss)
            sync = i == len(micro_batches) - 1 or not self.world.distributed
            with (nullcontext() if sync else self.trainer.no_sync()), self._autocast():
                losses = self.trainer(batch["pixel_values"].to(self.device), inputs)
                loss = total_loss(losses, family, s.loss_weights) / len(micro_batches)
            loss.backward()
            if first is None:
                first = {k: v.detach() for k, v in losses.items()}
        self.optimizer.step()
        if not self._weights_finite():  # before anything could write them
            self._diverged("the weights are no longer finite", losses=first, step=self.step + 1)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return first

    def _weights_finite(self) -> bool:
        trained = [p.detach() for p in self.tagger.model.parameters() if p.requires_grad]
        return bool(torch.stack([torch.isfinite(p).all() for p in trained]).all())

    def _diverged(self, what: str, *, losses: dict[str, torch.Tensor] | None = None,
                  step: int | None = None) -> None:
        """Stop: a non-finite loss or weight only spreads, and a NaN model tags nothing. Nothing of this step
        is written; the folder keeps what earlier steps wrote."""
        step = self.step if step is None else step
        lrs = ", ".join(f"{g['lr']:.3g}" for g in self.optimizer.param_groups)
        shown = "" if losses is None else " (losses " + ", ".join(
            f"{k} {v.item():.4g}" for k, v in losses.items()) + ")"
        self._log({"type": "diverged", "epoch": self.epoch, "step": step, "what": what, "lr": lrs})
        raise FinetuneError(f"training diverged at step {step} (epoch {self.epoch + 1}): {what}{shown} at lr "
                            f"{lrs}; nothing of this step was written: lower lr / --lr (and head_lr / --head-lr "
                            f"or the loss weights) and start again with --overwrite")

    def _inputs(self, batch: dict[str, Any], tag_loss: dict[str, float]) -> dict[str, Any]:
        family = self.tagger.family
        targets = D.tag_targets(self.examples, batch["index"], len(self.tagger.tag_list))
        if family == "tag2text" and self.tag_field is None and "parse_targets" in batch:
            targets = batch["parse_targets"]  # upstream's Tag2Text tags what the sampled caption names
        inputs: dict[str, Any] = {"tag_targets": targets, "tag_loss": tag_loss}
        captions = batch.get("captions")
        if captions is not None and family in ("ram", "tag2text"):
            inputs["captions"] = [CAPTION_PROMPT + c for c in captions]
            inputs["parse_targets"] = batch["parse_targets"]
        if self.teacher is not None:
            inputs["clip_image_features"] = self.teacher.image_features(batch["teacher_pixels"])
            if family == "ram_plus" and captions is not None:
                inputs["caption_text_embeds"] = self.teacher.text_embeddings(captions)
        return inputs

    def _autocast(self):
        precision = self.settings.train_precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- epochs, validation, saving ----------------------------------------------------------------------------
    def _end_epoch(self) -> None:
        if self.progress is not None and isinstance(self.progress, ConsoleProgress):
            self.progress.newline()
        if not self.has_validation:
            if self.world.is_main:
                self._write_model(self.base_thresholds, epoch=self.epoch)
            self.world.barrier()
            return
        self._validate(self.epoch)

    def _validate(self, epoch: int) -> None:
        from fiftyone_ram.training.validation import summary_of

        s = self.settings
        improved, summary = False, None
        if self.world.is_main:
            self.tagger.model.eval()
            # the weights as they will tag: at the validation precision (a copy sharing the fp32 weights)
            results = self.validation.evaluate(self.tagger.at_precision(self.validation_precision))
            summary = summary_of(results)
            entry = {"epoch": epoch, **summary}
            self.history.append(entry)
            value = summary.get(s.metric)
            improved = epoch >= 0 and value is not None and (
                self.best is None or self.best.get(s.metric) is None or value > self.best[s.metric])
            unscored = epoch >= 0 and value is None and self.best_epoch is None
            if improved:
                self.best, self.best_epoch, self.stale_epochs = summary, epoch, 0
                limits = (self.validation.tuned_thresholds(results, self.tagger, s.target_precision)
                          if s.tune_thresholds else self.base_thresholds)
                self._write_model(limits, epoch=epoch)
            elif epoch >= 0:
                self.stale_epochs += 1
            if unscored:  # no epoch has a score to be the best: the folder holds the latest model meanwhile
                self._write_model(self.base_thresholds, epoch=epoch)
            self._log({"type": "validation", **entry, "best": improved, "precision": self.validation_precision})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if v is not None and k in ("mAP", "CP", "CR"))
            label = "before training" if epoch < 0 else f"epoch {epoch + 1}"
            note = " (best so far: saved)" if improved else ""
            if unscored:
                note = (f" (no {s.metric} to pick the best epoch by: this epoch's model is saved, as the last "
                        f"epoch's will be until one has a {s.metric})")
            self.say(f"validation {label}: {shown or 'no scores'}{note}")
            self.tagger.model.train(s.dropout)
        state = self.world.broadcast((self.history, self.best, self.best_epoch, self.stale_epochs))
        self.history, self.best, self.best_epoch, self.stale_epochs = state

    def _early_stop(self) -> bool:
        patience = self.settings.early_stop
        if patience is None or not self.has_validation:
            return False
        stop = self.stale_epochs >= patience
        if stop and self.world.is_main:
            self.say(f"no better {self.settings.metric} for {patience} epoch(s): stopping early")
        return stop

    def _write_model(self, limits: np.ndarray, *, epoch: int) -> None:
        from fiftyone_ram.models.checkpoint import upstream_state_dict

        tagger = self.tagger
        config = tagger.config.to_dict()
        counts = None
        if tagger.family == "ram_plus":
            config["descriptions_per_tag"] = tagger.model.descriptions_per_tag
            mask = tagger.model.description_mask
            counts = mask.sum(dim=1).tolist() if mask is not None else None
        try:
            chinese = tagger.tag_list_chinese
        except Exception:  # noqa: BLE001  optional names (a download offline): the folder goes without them
            chinese = None
        write_model_folder(self.output, upstream_state_dict(tagger.model), config, tagger.tag_list, limits,
                           tag_list_chinese=chinese, description_counts=counts,
                           info=self._info(epoch))
        self.model_epoch = epoch

    def _info(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "step": self.step, "best": self.best, "history": self.history,
                "settings": self.settings.to_dict(), "report": self.examples.report,
                "model": str(self.spec.model), "checkpoint": str(self.spec.checkpoint),
                "tag_field": self.tag_field, "caption_field": self.caption_field}

    def _save_state(self) -> None:
        main = None
        if self.world.is_main:
            main = {"fingerprint": self.fingerprint, "model": self.tagger.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "epoch": self.epoch, "done_in_epoch": self.done_in_epoch, "step": self.step,
                    "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                    "stale_epochs": self.stale_epochs, "model_epoch": self.model_epoch}
        resume.save(self.resume_dir, self.world.rank, main)
        self.world.barrier()

    def _finish(self) -> FinetuneResult:
        if self.world.is_main:
            if not (self.output / MODEL_FILE).is_file():  # never a success without a model to use
                raise FinetuneError(f"the run wrote no model to {self.output} (see {LOG_FILE}); its resumable "
                                    f"state is kept in {self.resume_dir}")
            info_path = self.output / INFO_FILE
            info = json.loads(info_path.read_text()) if info_path.is_file() else {}
            info.update({"finished": True, "steps": self.step, "history": self.history, "best": self.best,
                         "best_epoch": self.best_epoch, "model_epoch": self.model_epoch})
            text = json.dumps(info, indent=2, default=str) + "\n"
            write_atomically(info_path, lambda tmp: tmp.write_text(text))
            self._log({"type": "end", "steps": self.step, "best_epoch": self.best_epoch, "best": self.best,
                       "model_epoch": self.model_epoch})
            resume.remove(self.resume_dir)
        self.world.barrier()
        self.tagger.model.eval()
        self.tagger.model.clear_query_cache()
        return FinetuneResult(self.output, self.step, self.epoch, self.best_epoch, self.best, self.history,
                              self.examples.report, self.tagger, self.model_epoch)

    def _log(self, record: Mapping[str, Any]) -> None:
        if not self.world.is_main:
            return
        path = self.output / LOG_FILE
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")
        except OSError as exc:
            raise WriteError(f"could not write {path}: {write_failure(exc)}") from exc


def _part_of(name: str) -> str | None:
    if name.startswith("visual_encoder."):
        return "backbone"
    if name.startswith("image_proj."):
        return "projection"
    if name.startswith(("tag_encoder.", "text_decoder.")):
        return "captioning"
    return "tagging_head"  # tagging_head, wordvec_proj, fc, reweight_scale, label_embed


def _parser(caption_parser: Any, tag_list: list[str]):
    from fiftyone_ram.labels.caption_parser import CaptionParser, load_parser
    from fiftyone_ram.models.registry import RAM_LABELS

    if caption_parser is not None and not isinstance(caption_parser, (str, Path)):
        return caption_parser
    if caption_parser is not None:
        return load_parser(caption_parser)
    if RAM_LABELS.matches(tag_list):
        return load_parser(None)
    from fiftyone_ram.labels.label_system import LabelSystem
    from fiftyone_ram.labels.synonyms import with_caption_synonyms

    return CaptionParser(with_caption_synonyms(LabelSystem(names=tuple(tag_list))))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _messenger(messages: Callable[[str], None] | None, world: distributed.World) -> Callable[[str], None]:
    if messages is not None:
        return messages if world.is_main else (lambda text: None)
    return (lambda text: print(text, file=sys.stderr, flush=True)) if world.is_main else (lambda text: None)
