"""One store for every kind of run the package records on a dataset, in FiftyOne's own run records.

A run (tagging a field, generating tags, cleaning a field and its review, fine-tuning, comparing, a pipeline)
is one :class:`RunRecord`: its kind, the field (or name) it writes, the settings that decide its outputs
(compared when it is resumed), its status in one vocabulary (:data:`STATUSES`), what stopped it, what it wrote.
It is stored as a FiftyOne run of the dataset (``dataset.list_runs()``, ``get_run_info``, ``delete_run`` work as
for any run) under the key ``ram_<kind>_<target>``; a kind's larger bookkeeping (categories done, removed
labels, figures) goes in the run's results (:func:`save_state` / :func:`load_state`). Evaluations are not
here: they are FiftyOne evaluation runs, which FiftyOne records itself.

Callers that change a record two runs may share (the dataset's document) hold the dataset's lock
(:func:`fiftyone_ram.driver.claims.dataset_lock`); a record FiftyOne cannot read is treated as absent.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The one status vocabulary of every run.
RUNNING, INTERRUPTED, FAILED, COMPLETED = STATUSES = ("running", "interrupted", "failed", "completed")
#: The kinds of runs recorded here (the key's middle part).
KINDS = ("tag", "generate", "clean", "review", "finetune", "compare", "pipeline")
METHOD_PREFIX = "fiftyone_ram."


class RunStoreError(ValueError):
    """A record that cannot be stored as asked (unknown kind or status, a target that is no key)."""


def run_key(kind: str, target: str) -> str:
    """The FiftyOne run key of a kind's run on ``target`` (a field name: an identifier, so the key is one)."""
    if kind not in KINDS:
        raise RunStoreError(f"unknown run kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return f"ram_{kind}_{target}"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One run: what it is, how it stands, what it read (``inputs``: fields, views, models) and wrote
    (``outputs``: fields, model folders; ``figures``: the files of the figures it drew). ``details`` holds a
    kind's own bookkeeping that is not a setting (whether a tagging run overwrites, the id of its current pass)."""

    kind: str
    target: str
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = RUNNING
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise RunStoreError(f"unknown run status {self.status!r}; the statuses are {', '.join(STATUSES)}")

    @property
    def key(self) -> str:
        return run_key(self.kind, self.target)

    @property
    def finished(self) -> bool:
        return self.status == COMPLETED

    def ended(self, status: str, error: BaseException | str | None = None) -> RunRecord:
        """This record with its status set (and the one line that says what stopped it)."""
        if status not in STATUSES:
            raise RunStoreError(f"unknown run status {status!r}")
        self.status = status
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        self.error = None if error is None else " ".join(str(error).split())[:300]
        return self


def load(dataset: Any, kind: str, target: str) -> RunRecord | None:
    """The kind's run on ``target``, or None (none recorded, or a record FiftyOne cannot read)."""
    key = run_key(kind, target)
    if not dataset.has_run(key):
        return None
    try:
        config = dataset.get_run_info(key).config
    except Exception:  # a config class that cannot be imported (another package): not ours to read
        return None
    if getattr(config, "method", None) != METHOD_PREFIX + kind:
        return None
    values = {f.name: _plain(getattr(config, f.name, None)) for f in fields(RunRecord)}
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return RunRecord(**values)
    except (TypeError, RunStoreError):
        return None


def save(dataset: Any, record: RunRecord) -> None:
    """Register the run, or update its config when this run is the one registered (another run's record under
    the same key is replaced: the caller decided so)."""
    record.updated_at = now()
    config = dataset.init_run(method=METHOD_PREFIX + record.kind, **asdict(record))
    existing = load(dataset, record.kind, record.target)
    if existing is not None and existing.run_id == record.run_id:
        dataset.update_run_config(record.key, config)
        return
    dataset.register_run(record.key, config, overwrite=True)


def delete(dataset: Any, kind: str, target: str) -> None:
    """Forget the kind's run on ``target`` (its record and its state; nothing it wrote)."""
    key = run_key(kind, target)
    if dataset.has_run(key):
        dataset.delete_run(key)


def records(dataset: Any, kind: str | None = None) -> list[RunRecord]:
    """Every readable run of ``kind`` (all kinds when None), oldest first."""
    out = []
    for key in dataset.list_runs():
        for candidate in ([kind] if kind else KINDS):
            prefix = f"ram_{candidate}_"
            if key.startswith(prefix):
                record = load(dataset, candidate, key[len(prefix):])
                if record is not None:
                    out.append(record)
                break
    return sorted(out, key=lambda r: r.started_at)


def save_state(dataset: Any, kind: str, target: str, **state: Any) -> None:
    """A registered run's bookkeeping (its results), replaced whole."""
    key = run_key(kind, target)
    dataset.save_run_results(key, dataset.init_run_results(key, **state), overwrite=True)


def load_state(dataset: Any, kind: str, target: str) -> dict[str, Any]:
    """What :func:`save_state` stored ({} when nothing)."""
    key = run_key(kind, target)
    if not dataset.has_run(key):
        return {}
    results = dataset.load_run_results(key, cache=False)
    state = results.serialize() if results is not None else {}
    for name in ("cls", "run_key"):
        state.pop(name, None)
    return dict(state)


def _plain(value: Any) -> Any:
    """Plain dicts and lists in place of the database's own containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
