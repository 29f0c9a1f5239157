"""What an evaluation key may write, checked before anything is written.

A tag evaluation writes sample fields (``<key>_tp``, ``<key>_fp``, ``<key>_fn``, ``<key>_missed``) and a
``<key>`` attribute on every label of both fields. FiftyOne adds such fields without asking whether they
already exist, and its ``delete_evaluation`` later deletes whatever carries those names. So the names are
checked here first: a name that exists (declared in the schema, or present in the data without being
declared) and does not belong to this key's own earlier run is refused, with one line that names it. A key
already used by another evaluation (another method) is refused. One used by an earlier tag evaluation is
replaced, as FiftyOne replaces a run of the same type under a reused key (naming the key is the request);
``overwrite=False`` refuses it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fiftyone_ram.errors import UserError

#: The method name our runs are registered with (``config.method``).
METHOD = "ram-tags"
#: Shown at most in one message, so that it stays one line.
MAX_NAMES = 6


class EvalKeyError(UserError, ValueError):
    """An evaluation key that is invalid, taken, or whose fields would overwrite other data."""


@dataclass(frozen=True)
class KeyPlan:
    """What recording under a key will do: ``replaces`` is True when an earlier run of ours is replaced."""

    key: str
    replaces: bool


def check_key(samples: Any, method: Any, key: Any, *, overwrite: bool) -> KeyPlan:
    """Refuse ``key`` unless ``method``'s run can be recorded under it without touching anyone else's data.

    ``method`` is the new run's :class:`~fiftyone_ram.evaluation.run.TagEvaluation` (it knows the names it
    will write). Raises :class:`EvalKeyError` with one line."""
    if not isinstance(key, str) or not key.isidentifier():
        raise EvalKeyError(f"invalid evaluation key {key!r}: a key is a Python identifier (letters, digits and "
                           f"underscores, not starting with a digit)")
    dataset = samples._dataset
    owned: set[str] = set()
    replaces = False
    if key in dataset.list_evaluations():
        info = dataset.get_evaluation_info(key)
        config = info.config
        if getattr(config, "method", None) != METHOD:
            raise EvalKeyError(f"evaluation key '{key}' is taken by another evaluation (method "
                               f"'{getattr(config, 'method', '?')}'): choose another key, or delete that one first "
                               f"(dataset.delete_evaluation('{key}'))")
        if not overwrite:
            when = f", {info.timestamp:%Y-%m-%d %H:%M}" if getattr(info, "timestamp", None) else ""
            raise EvalKeyError(f"evaluation key '{key}' already holds a tag evaluation of '{config.pred_field}' "
                               f"against '{config.gt_field}'{when}: choose another key, or allow replacing it "
                               f"(overwrite=True)")
        owned = set(config.build().get_fields(dataset, key))
        replaces = True
    wanted = [name for name in method.get_fields(samples, key) if name not in owned]
    taken = _existing(dataset, wanted)
    if taken:
        raise EvalKeyError(_taken_message(samples, key, taken))
    return KeyPlan(key, replaces)


def _existing(dataset: Any, names: list[str]) -> list[str]:
    """The names that exist: in the schema, or in the stored documents without being declared."""
    declared = [n for n in names if dataset.get_field(n, include_private=True) is not None]
    rest = [n for n in names if n not in declared]
    if not rest:
        return declared
    collection = dataset._sample_collection
    query = {"$or": [{name: {"$exists": True}} for name in rest]}
    if collection.find_one(query, {"_id": 1}) is None:  # one query in the usual case: none is there
        return declared
    return declared + [n for n in rest if collection.find_one({n: {"$exists": True}}, {"_id": 1}) is not None]


def _taken_message(samples: Any, key: str, taken: list[str]) -> str:
    shown = ", ".join(taken[:MAX_NAMES]) + (f" and {len(taken) - MAX_NAMES} more" if len(taken) > MAX_NAMES else "")
    builtin = any(_is_builtin_attribute(samples, name) for name in taken)
    why = f" ('{key}' is a built-in attribute of every label)" if builtin else ""
    return (f"evaluation key '{key}' would overwrite {shown}, which already exist{'s' if len(taken) == 1 else ''} "
            f"and {'is' if len(taken) == 1 else 'are'} not this evaluation's{why}: choose another key")


def _is_builtin_attribute(samples: Any, name: str) -> bool:
    """Whether ``name`` (``field[.list].attr``) is a default attribute of its label class (``tags``, ``label``...)."""
    parent, _, attr = name.rpartition(".")
    if not parent:
        return False
    field = samples.get_field(parent)
    field = getattr(field, "field", field)  # a list of labels: its element type
    document = getattr(field, "document_type", None)
    return document is not None and attr in getattr(document, "_fields_ordered", ())
