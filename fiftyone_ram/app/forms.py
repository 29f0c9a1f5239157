"""App form fields for a tagger's options, shared by the ``tag_images`` operator and the zoo source's
``resolve_input`` (so that both show the same choices), and their translation into ``load_model`` keywords.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import fiftyone.operators.types as types

from fiftyone_ram.hardware import PRECISION_CHOICES
from fiftyone_ram.models.registry import FAMILY_NAMES

PER_CLASS, GLOBAL = "per_class", "global"
CUSTOM = "custom"
_PRECISION_NOTES = {"auto": " (what this machine runs fast)", "fp32": " (exact)", "fp16": " (GPU)", "int8": " (CPU)"}
#: The precision menu, in the order of ``fiftyone_ram.hardware.PRECISION_CHOICES``.
PRECISION_LABELS = {choice: choice + _PRECISION_NOTES.get(choice, "") for choice in PRECISION_CHOICES}


def model_choices(*, captions_only: bool = False, custom_label: str = "Your own checkpoint") -> dict[str, str]:
    """Menu entries for a model choice: the released variants of the registry, then ``custom``."""
    from fiftyone_ram.models.registry import default_cfgs

    choices = {name: cfg.label for name, cfg in default_cfgs.items() if cfg.captions or not captions_only}
    choices[CUSTOM] = custom_label
    return choices


def default_model() -> str:
    from fiftyone_ram.models.registry import DEFAULT_VARIANT

    return DEFAULT_VARIANT


def model_family(choice: str | None) -> str | None:
    """The family of a released model choice; None for ``custom`` (the form then asks for it)."""
    from fiftyone_ram.models.registry import get_variant

    return None if not choice or choice == CUSTOM else get_variant(choice).family


def add_tagger_options(inputs: types.Object, values: dict[str, Any], *, family: str | None,
                       custom: bool) -> bool:
    """Add the fields; ``values`` are the form's current values. Returns whether the form is complete."""
    complete = True
    if custom:
        family, complete = _add_checkpoint_fields(inputs, values)
    else:
        inputs.str("checkpoint_path", required=False, label="Checkpoint (optional)",
                   description="Your own weights instead of the released ones (same architecture)")

    mode_choices = types.RadioGroup()
    mode_choices.add_choice(PER_CLASS, label="Per-class thresholds",
                            description="Each tag's own threshold (upstream's file): the model's intended output")
    mode_choices.add_choice(GLOBAL, label="One threshold", description="The same number for every tag")
    inputs.enum("threshold_mode", mode_choices.values(), default=PER_CLASS, label="Threshold", view=mode_choices)
    if values.get("threshold_mode", PER_CLASS) == GLOBAL:
        inputs.float("threshold", default=0.68, min=0.0, max=1.0, required=True, label="Threshold",
                     description="A tag is kept when its confidence is above this")
    else:
        inputs.str("thresholds", required=False, label="Threshold file (optional)",
                   description="One threshold per line, aligned with the tag list; empty = upstream's")

    if family != "tag2text":
        language = types.RadioGroup()
        language.add_choice("en", label="English")
        language.add_choice("zh", label="Chinese")
        inputs.enum("language", language.values(), default="en", label="Tag language", view=language)
        if values.get("language") == "zh" and (custom or values.get("tag_list")):
            own_list = bool(values.get("tag_list"))
            inputs.str("tag_list_chinese", required=own_list, label="Chinese tag list" + ("" if own_list else
                       " (optional)"), description="One Chinese name per line, aligned with the tag list"
                       + ("" if own_list else "; empty = upstream's (cached, downloaded on first use)"))
            complete = complete and (bool(values.get("tag_list_chinese")) or not own_list)
    else:
        inputs.bool("caption", default=True, label="Caption",
                    description="Also write a caption (the field's `caption` attribute, shown in the sidebar; "
                                "slower)")
        if custom and values.get("caption", True) and _needs_vocabulary(values.get("checkpoint_path")):
            inputs.str("tokenizer", required=True, label="Caption vocabulary (vocab.txt)",
                       description="This checkpoint's captioner does not use BERT's 30524 tokens: its "
                                   "vocab.txt (or put it beside the checkpoint)")
            complete = complete and bool(values.get("tokenizer"))
    inputs.list("classes", types.String(), required=False, label="Only these tags (optional)",
                description="Score only these tags (faster; same scores); empty = the whole vocabulary")
    if family != "tag2text":  # Tag2Text's queries are learned: "Only these tags" is all it can do
        _add_vocabulary_options(inputs, family)
    device = types.DropdownView()
    for choice in ("auto", "cpu", "cuda"):
        device.add_choice(choice, label=choice)
    inputs.enum("device", device.values(), default="auto", label="Device", view=device)
    add_precision_option(inputs)
    return complete


def add_precision_option(inputs: types.Object) -> None:
    """The numeric precision of the model (``load_tagger(precision=...)``)."""
    precision = types.DropdownView()
    for choice, label in PRECISION_LABELS.items():
        precision.add_choice(choice, label=label)
    inputs.enum("precision", precision.values(), default="auto", label="Precision", view=precision,
                description="auto: $FIFTYONE_RAM_PRECISION where the server sets it, else bf16 on GPUs and on "
                            "CPUs with bf16 instructions, int8 on other x86 CPUs")


def tagger_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """Form values to ``fiftyone_ram.fiftyone.load_model`` keywords (empty fields dropped)."""
    out: dict[str, Any] = {}
    for key in ("family", "checkpoint_path", "config", "tag_list", "tag_list_chinese", "thresholds", "language",
                "tokenizer"):
        if values.get(key):
            out[key] = values[key]
    if values.get("threshold_mode") == GLOBAL and values.get("threshold") is not None:
        out["confidence_thresh"] = float(values["threshold"])
        out.pop("thresholds", None)
    classes = values.get("classes")
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",")]
    if classes:
        out["classes"] = [c for c in classes if c]
    if values.get("device") and values["device"] != "auto":
        out["device"] = values["device"]
    if values.get("precision") and values["precision"] != "auto":  # auto: load_tagger's default (the env var)
        out["precision"] = values["precision"]
    if "caption" in values and values["caption"] is not None:
        out["caption"] = bool(values["caption"])
    out.update(_vocabulary_kwargs(values))
    return out


def _add_checkpoint_fields(inputs: types.Object, values: dict[str, Any]) -> tuple[str | None, bool]:
    """Your own checkpoint: only its path is needed; the family and architecture are read from it (a config
    file and the family choice stay available for checkpoints that are not upstream-layout)."""
    inputs.str("checkpoint_path", required=True, label="Checkpoint",
               description="Path of an upstream-layout checkpoint (.pth) on the machine that runs the tagging")
    path = values.get("checkpoint_path")
    found = checkpoint_summary(path) if path else None
    if isinstance(found, str):  # the reason the file cannot be read
        inputs.view("checkpoint_error", types.Error(label="This checkpoint cannot be read", description=found))
        return None, False
    if found is not None:
        inputs.view("checkpoint_found", types.Notice(label=f"{FAMILY_NAMES[found[0]]} checkpoint; architecture "
                                                           f"read from its tensor shapes ({found[1]})"))
    family = found[0] if found is not None else values.get("family")
    if found is None:  # not read yet (no path) or not recognisable: ask
        family_choices = types.RadioGroup()
        for key, label in FAMILY_NAMES.items():
            family_choices.add_choice(key, label=label)
        inputs.enum("family", family_choices.values(), required=bool(path), label="Model family",
                    view=family_choices)
    inputs.str("config", required=False, label="Architecture config (optional)",
               description="JSON file with the architecture sizes; empty = read from the checkpoint")
    inputs.str("tag_list", required=False, label="Tag list (optional)",
               description="One tag per line, in the checkpoint's class order; empty = upstream's (cached, "
                           "downloaded on first use)")
    return family, bool(path) and family is not None


def checkpoint_summary(path: str) -> tuple[str, str, int | None] | str | None:
    """(family, "Swin 192, 384 px", captioner vocabulary size or None) of a checkpoint, the reason it cannot
    be read, or None when its family is not recognisable. Cached per file version: the form re-resolves on
    every keystroke."""
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        return f"{file} does not exist (on the machine that runs the App server)"
    stat = file.stat()
    return _checkpoint_summary(str(file), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _checkpoint_summary(path: str, mtime_ns: int, size: int) -> tuple[str, str, int | None] | str | None:
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.models.architecture import caption_vocab_size, infer_config
    from fiftyone_ram.models.checkpoint import detect_family, read_state_dict
    from fiftyone_ram.models.registry import labels_for_family

    try:
        state = read_state_dict(path)
        family = detect_family(state)
        if family is None:
            return None
        config = infer_config(state, num_classes=labels_for_family(family).num_classes, family=family)
    except UserError as exc:
        return str(exc)
    return family, f"Swin {config.swin.embed_dim}, {config.image_size} px", caption_vocab_size(state)


def _needs_vocabulary(path: str | None) -> bool:
    """Whether a Tag2Text checkpoint's captioner needs a vocab.txt that is not beside it."""
    from pathlib import Path

    from fiftyone_ram.models.architecture import BERT_BASE_CAPTION_VOCAB

    if not path or (Path(path).expanduser().parent / "vocab.txt").is_file():
        return False
    found = checkpoint_summary(path)
    return isinstance(found, tuple) and found[2] not in (None, BERT_BASE_CAPTION_VOCAB)


def _add_vocabulary_options(inputs: types.Object, family: str | None) -> None:
    """Your own vocabulary: new tags are embedded with CLIP's text encoder once, then read from the cache."""
    inputs.list("tags", types.String(), required=False, label="Vocabulary (optional)",
                description="Answer these tags instead of the model's: its own are selected, new ones are "
                            "embedded with CLIP (RAM: upstream's prompt templates; RAM++: descriptions or templates)")
    inputs.str("tags_file", required=False, label="Vocabulary file (optional)",
               description="One tag per line, on the machine that runs the tagging; added to the list above")
    if family in (None, "ram_plus"):
        inputs.str("descriptions", required=False, label="Tag descriptions (optional, RAM++)",
                   description="JSON in upstream's format: [{\"tag\": [\"description\", ...]}, ...]; the "
                               "vocabulary when no tags are given")
    inputs.bool("keep_builtin", default=False, label="Also keep the model's own tags",
                description="The model's tags plus the vocabulary's new ones")
    inputs.float("new_tag_threshold", required=False, min=0.0, max=1.0, label="Threshold of new tags (optional)",
                 description="Empty = 0.5, upstream's open-set default (open-set scores run lower)")
    inputs.str("text_encoder", required=False, label="CLIP text encoder (optional)",
               description="Hub name or folder; empty = openai/clip-vit-base-patch16 (downloaded once)")


def _vocabulary_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tags = values.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")
    tags = [t.strip() for t in tags or [] if t and t.strip()]
    if values.get("tags_file"):
        if tags:
            from fiftyone_ram.vocabulary import read_tags

            tags += read_tags(values["tags_file"])
        else:
            out["tags"] = values["tags_file"]  # read where the model is loaded
    if tags:
        out["tags"] = tags
    for key in ("descriptions", "text_encoder"):
        if values.get(key):
            out[key] = values[key]
    if values.get("keep_builtin"):
        out["keep_builtin"] = True
    if values.get("new_tag_threshold") is not None:
        out["new_tag_threshold"] = float(values["new_tag_threshold"])
    return out


def add_engine_options(inputs, ctx, what: str = "the model passes") -> None:
    """The engine choice of a form that runs a model over a view (Ray: delegated runs only, since the
    orchestrator, not the App's server, is then Ray's driver)."""
    import fiftyone.operators.types as types

    inputs.enum("engine", ["local", "ray"], default="local", label="Engine", view=types.RadioGroup(),
                description=f"ray: {what} on Ray Data over a cluster's workers (delegated runs only)")
    if ctx.params.get("engine") == "ray":
        inputs.str("ray_address", default=None, required=False, label="Ray cluster address",
                   description="auto, ray://host:10001 or host:6379; empty: a local cluster")
        inputs.int("workers", default=1, min=1, label="Model workers")
        inputs.float("gpus_per_worker", default=0.0, min=0.0, label="GPUs per worker")
        if not ctx.delegated:
            inputs.view("ray_delegated", types.Warning(
                label="The Ray engine runs only as a delegated operation: schedule this run"))


def engine_options(params: dict, delegated: bool):
    """``(engine, ray_options)`` from a form's values; Ray refused in one line unless the run is delegated."""
    engine = params.get("engine") or "local"
    if engine != "ray":
        return engine, None
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.driver.ray_executor import RayOptions

    if not delegated:
        raise UserError("the Ray engine runs only as a delegated operation: schedule the run")
    return engine, RayOptions(address=params.get("ray_address") or None, workers=params.get("workers") or 1,
                              gpus_per_worker=float(params.get("gpus_per_worker") or 0.0))
