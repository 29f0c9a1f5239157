"""App form fields built from the jobs' settings (:mod:`fiftyone_ram.jobs`), and the form values translated back.

The operators (``operators/``) and the zoo source's ``resolve_input`` show what the jobs define: each field's
label, help, default, range and choices are the setting's (:func:`add_settings`), and the values become the job
(:func:`job_from_form`) whose own checks then run. The tagger is chosen once, the same way in every form
(:func:`add_tagger_inputs`, :func:`tagger_spec_from_form`): a released model, or your own checkpoint or model
folder, whose architecture, family and tags are read from it and said in the form.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import fiftyone.operators.types as types

from fiftyone_ram.hardware import PRECISION_CHOICES
from fiftyone_ram.jobs import (CHOICES, FORM, HELP, HIGH, LABEL, LOW, default_of, field_of, item_type, types_of,
                               value_types)
from fiftyone_ram.models.registry import FAMILY_NAMES

CUSTOM = "custom"
PER_CLASS, GLOBAL = "per_class", "global"
_PRECISION_NOTES = {"auto": " (what this machine runs fast)", "fp32": " (exact)", "fp16": " (GPU)", "int8": " (CPU)"}
#: The precision menu, in the order of ``fiftyone_ram.hardware.PRECISION_CHOICES``.
PRECISION_LABELS = {choice: choice + _PRECISION_NOTES.get(choice, "") for choice in PRECISION_CHOICES}


# -- settings -----------------------------------------------------------------------------------------------


def add_setting(inputs: types.Object, cls: type, name: str, values: dict[str, Any], *, key: str | None = None,
                required: bool | None = None, choices: list[str] | None = None, **changes: Any):
    """The form field of setting ``name`` of ``cls`` (under ``key``, default the setting's name); ``choices``: the
    values the dataset offers (a dropdown of valid names, e.g. fields of the right type); ``changes``: keywords
    of the field that differ here (a default the form derives, say). Returns the property."""
    f = field_of(cls, name)
    meta = f.metadata
    key = key or name
    kinds = value_types(types_of(cls).get(name))
    try:
        default = default_of(cls, name)
        needed = False
    except KeyError:
        default, needed = None, True
    label = meta.get(LABEL) or name.replace("_", " ").capitalize()
    keywords: dict[str, Any] = {"label": label, "description": _sentence(meta[HELP]),
                                "required": needed if required is None else required}
    if default not in (None, (), []):
        keywords["default"] = list(default) if isinstance(default, tuple) else default
    keywords.update(changes)
    if choices is not None:
        view = types.DropdownView()
        for choice in choices:
            view.add_choice(choice, label=str(choice))
        return inputs.enum(key, list(choices), view=view, **keywords)
    choices = meta.get(CHOICES)
    if (tuple in kinds or list in kinds) and not choices:
        element = item_type(types_of(cls).get(name))
        item = types.Number(int=element is int) if element in (int, float) else types.String()
        return inputs.list(key, item, **keywords)
    if tuple in kinds or list in kinds:
        return inputs.list(key, types.Enum(list(choices)), **keywords)
    if choices:
        view = types.RadioGroup() if len(choices) <= 4 else types.DropdownView()
        for choice in choices:
            view.add_choice(choice, label=str(choice))
        return inputs.enum(key, list(choices), view=view, **keywords)
    if bool in kinds:
        return inputs.bool(key, **keywords)
    if int in kinds and float not in kinds:
        return inputs.int(key, min=meta.get(LOW), max=meta.get(HIGH), **keywords)
    if float in kinds:
        low, high = meta.get(LOW), meta.get(HIGH)
        if meta.get("kind") == "threshold":
            low, high = 0.0, 1.0
        return inputs.float(key, min=low, max=high, **keywords)
    return inputs.str(key, **keywords)


def add_settings(inputs: types.Object, cls: type, names: tuple[str, ...] | list[str], values: dict[str, Any]) -> None:
    """The form fields of several settings, in order (those marked ``form=False`` are skipped)."""
    for name in names:
        if field_of(cls, name).metadata.get(FORM, True):
            add_setting(inputs, cls, name, values)


def form_values(cls: type, values: dict[str, Any], names: tuple[str, ...] | list[str] | None = None
                ) -> dict[str, Any]:
    """The values of ``cls``'s settings in a form's ``values`` (empty ones left out: the default applies)."""
    from fiftyone_ram.jobs import settings_of

    wanted = set(names) if names is not None else {f.name for f in settings_of(cls)}
    out = {}
    for name in wanted:
        value = values.get(name)
        if value is None or value == "" or value == []:
            continue
        out[name] = value
    return out


def job_from_form(cls: type, values: dict[str, Any], names: tuple[str, ...] | list[str] | None = None, **fixed: Any):
    """The job of class ``cls`` from a form's values (types converted as the settings say)."""
    return cls.from_values(form_values(cls, values, names), **fixed)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


# -- the tagger ---------------------------------------------------------------------------------------------


def model_choices(*, captions_only: bool = False, custom_label: str = "Your own checkpoint or model folder"
                  ) -> dict[str, str]:
    """Menu entries for a model choice: the released variants of the registry, then ``custom``."""
    from fiftyone_ram.models.registry import default_cfgs

    choices = {name: cfg.label for name, cfg in default_cfgs.items() if cfg.captions or not captions_only}
    choices[CUSTOM] = custom_label
    return choices


def default_model() -> str:
    from fiftyone_ram.models.registry import DEFAULT_VARIANT

    return DEFAULT_VARIANT


def model_family(choice: str | None) -> str | None:
    """The family of a released model choice; None for ``custom`` (read from the checkpoint)."""
    from fiftyone_ram.models.registry import get_variant

    return None if not choice or choice == CUSTOM else get_variant(choice).family


def add_tagger_inputs(inputs: types.Object, values: dict[str, Any], *, prefix: str = "", label: str = "Model",
                      captions_only: bool = False, none_label: str | None = None, precision: bool = True,
                      thresholds: bool = True) -> tuple[str | None, bool]:
    """The model choice of a form (its keys prefixed with ``prefix``): a released model, or your own checkpoint or
    model folder (what was read from it is said in the form). ``none_label`` adds a "no model" choice;
    ``thresholds``: also a threshold file for your own checkpoint (a form with the output options offers it
    there). Returns the family (None when unknown yet) and whether the choice is complete."""
    choices = model_choices(captions_only=captions_only)
    if none_label is not None:
        choices = {"none": none_label, **choices}
    default = "none" if none_label is not None else default_model()
    view = types.DropdownView()
    for choice, text in choices.items():
        view.add_choice(choice, label=text)
    inputs.enum(f"{prefix}model", list(choices), default=default, label=label, view=view)
    choice = values.get(f"{prefix}model") or default
    if choice == "none":
        return None, True
    complete = True
    family = model_family(choice)
    path = values.get(f"{prefix}checkpoint_path")
    if choice == CUSTOM:
        inputs.str(f"{prefix}checkpoint_path", required=True, label="Checkpoint or model folder",
                   description="An upstream-layout .pth, or a folder written by fine-tuning, on the machine that "
                               "runs the operation")
        found = checkpoint_summary(path) if path else None
        if isinstance(found, str):  # the reason it cannot be read
            inputs.view(f"{prefix}checkpoint_error", types.Error(label="This checkpoint cannot be read",
                                                                 description=found))
            return None, False
        if found is not None:
            family = found["family"]
            inputs.view(f"{prefix}checkpoint_found", types.Notice(label=found["description"]))
            if captions_only and family != "tag2text":
                inputs.view(f"{prefix}not_captioner", types.Error(label="Captions need a Tag2Text model"))
                return family, False
        if captions_only:
            family = "tag2text"  # only Tag2Text writes captions: no family to choose
            inputs.view(f"{prefix}family_note", types.Notice(label="Family: Tag2Text (the captioning model)"))
        if not found or not found.get("folder"):
            if found is None and not captions_only:  # not read yet, or a family not recognisable: ask
                family = values.get(f"{prefix}family")
                view = types.RadioGroup()
                for key, text in FAMILY_NAMES.items():
                    view.add_choice(key, label=text)
                inputs.enum(f"{prefix}family", list(FAMILY_NAMES), required=bool(path), label="Model family",
                            view=view)
            inputs.str(f"{prefix}config", required=False, label="Architecture config (optional)",
                       description="JSON file with the architecture sizes; empty: read from the checkpoint")
            inputs.str(f"{prefix}tag_list", required=False, label="Tag list (optional)",
                       description="One tag per line, in the checkpoint's class order; empty: upstream's (cached, "
                                   "downloaded on first use)")
            if (found is not None and found.get("needs_vocab") and not values.get(f"{prefix}tokenizer")
                    and values.get(f"{prefix}caption", True) is not False):
                inputs.str(f"{prefix}tokenizer", required=True, label="Caption vocabulary (vocab.txt)",
                           description="This checkpoint's captioner does not use BERT's 30524 tokens: its vocab.txt "
                                       "(or put it beside the checkpoint)")
                complete = False
        complete = complete and bool(path) and family is not None
        if thresholds and not (found and found.get("folder")):
            inputs.str(f"{prefix}thresholds", required=False, label="Threshold file (optional)",
                       description="One threshold per line, aligned with the tag list; empty: upstream's")
    else:
        inputs.str(f"{prefix}checkpoint_path", required=False, label="Checkpoint (optional)",
                   description="Your own weights instead of the released ones (same architecture), or a model "
                               "folder")
        found = checkpoint_summary(path) if path else None
        if isinstance(found, str):
            inputs.view(f"{prefix}checkpoint_error", types.Error(label="This checkpoint cannot be read",
                                                                 description=found))
            complete = False
        elif found is not None:
            inputs.view(f"{prefix}checkpoint_found", types.Notice(label=found["description"]))
    if precision:
        device = types.DropdownView()
        for choice_ in ("auto", "cpu", "cuda"):
            device.add_choice(choice_, label=choice_)
        inputs.enum(f"{prefix}device", ["auto", "cpu", "cuda"], default="auto", label="Device", view=device)
        add_precision_option(inputs, key=f"{prefix}precision")
    return family, complete


def add_precision_option(inputs: types.Object, key: str = "precision") -> None:
    """The numeric precision of the model (``load_tagger(precision=...)``)."""
    precision = types.DropdownView()
    for choice, label in PRECISION_LABELS.items():
        precision.add_choice(choice, label=label)
    inputs.enum(key, precision.values(), default="auto", label="Precision", view=precision,
                description="auto: $FIFTYONE_RAM_PRECISION where the server sets it, else bf16 on GPUs and on "
                            "CPUs with bf16 instructions, int8 on other x86 CPUs")


def tagger_spec_from_form(values: dict[str, Any], *, prefix: str = "", optional: bool = False, **changes: Any):
    """The :class:`~fiftyone_ram.tagger_spec.TaggerSpec` a form's model choice describes (None: "no model", which
    an ``optional`` choice, such as the captioner, defaults to)."""
    from fiftyone_ram.tagger_spec import TaggerSpec

    choice = values.get(f"{prefix}model") or ("none" if optional else default_model())
    if choice == "none":
        return None
    get = lambda key: values.get(f"{prefix}{key}") or None  # noqa: E731  empty fields are not given
    device = get("device")
    precision = get("precision")
    family = None
    if choice == CUSTOM:  # the family the form read from the checkpoint, unless the user named one
        found = checkpoint_summary(get("checkpoint_path")) if get("checkpoint_path") else None
        detected = found.get("family") if isinstance(found, dict) and not found.get("folder") else None
        family = get("family") or detected or ("tag2text" if prefix == "captioner_" else None)
    spec = TaggerSpec(model=get("config") or (None if choice == CUSTOM else choice), checkpoint=get("checkpoint_path"),
                      family=family, tag_list=get("tag_list"),
                      tag_list_chinese=get("tag_list_chinese"), thresholds=get("thresholds"),
                      tokenizer=get("tokenizer"), device=None if device == "auto" else device,
                      precision=None if precision == "auto" else precision)
    return spec.replace(**changes) if changes else spec


def checkpoint_summary(path: str) -> dict[str, Any] | str | None:
    """What a checkpoint or model folder is (``family``, a ``description`` for the form, whether it is a
    ``folder`` and ``needs_vocab``), the reason it cannot be read, or None when its family is not recognisable.
    Cached per file version: the form re-resolves on every keystroke."""
    target = Path(path).expanduser()
    if target.is_dir():
        stat = (target / "model.pth").stat() if (target / "model.pth").is_file() else target.stat()
        return _folder_summary(str(target), stat.st_mtime_ns, stat.st_size)
    if not target.is_file():
        return f"{target} does not exist (on the machine that runs the App server)"
    stat = target.stat()
    return _checkpoint_summary(str(target), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _folder_summary(path: str, mtime_ns: int, size: int) -> dict[str, Any] | str:
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.model_folder import read_model_folder
    from fiftyone_ram.models.registry import resolve_config
    from fiftyone_ram.tag_files import read_tag_list

    try:
        folder = read_model_folder(path)
        config = resolve_config(folder.config)
        tags = len(read_tag_list(folder.tag_list))
    except UserError as exc:
        return str(exc)
    return {"family": config.family, "folder": True, "needs_vocab": False,
            "description": f"Model folder: {FAMILY_NAMES[config.family]}, Swin {config.swin.embed_dim}, "
                           f"{config.image_size} px, {tags} tags (its own tag list and thresholds)"}


@lru_cache(maxsize=16)
def _checkpoint_summary(path: str, mtime_ns: int, size: int) -> dict[str, Any] | str | None:
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.models.architecture import BERT_BASE_CAPTION_VOCAB, caption_vocab_size, infer_config
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
    vocab = caption_vocab_size(state)
    beside = (Path(path).parent / "vocab.txt").is_file()
    return {"family": family, "folder": False,
            # only Tag2Text captions (RAM's caption branch serves training's caption loss, not tagging)
            "needs_vocab": family == "tag2text" and vocab not in (None, BERT_BASE_CAPTION_VOCAB) and not beside,
            "description": f"{FAMILY_NAMES[family]} checkpoint; architecture read from its tensor shapes (Swin "
                           f"{config.swin.embed_dim}, {config.image_size} px)"}


# -- what the tagging model does with its scores, and the vocabulary -----------------------------------------


def add_output_options(inputs: types.Object, values: dict[str, Any], family: str | None) -> bool:
    """The tag rule (per-class thresholds, or one for all), the tag names' language, Tag2Text's caption.
    Returns whether they are complete (your own tag list in Chinese needs its Chinese names)."""
    from fiftyone_ram.driver.tagging import TagJob

    complete = True

    mode = types.RadioGroup()
    mode.add_choice(PER_CLASS, label="Per-class thresholds",
                    description="Each tag's own threshold (the checkpoint's file): the model's intended output")
    mode.add_choice(GLOBAL, label="One threshold", description="The same number for every tag")
    inputs.enum("threshold_mode", mode.values(), default=PER_CLASS, label="Threshold", view=mode)
    if values.get("threshold_mode", PER_CLASS) == GLOBAL:
        add_setting(inputs, TagJob, "threshold", values, required=True)
    else:
        inputs.str("thresholds", required=False, label="Threshold file (optional)",
                   description="One threshold per line, aligned with the tag list; empty: the checkpoint's own")
    if family != "tag2text":
        language = types.RadioGroup()
        language.add_choice("en", label="English")
        language.add_choice("zh", label="Chinese")
        inputs.enum("language", language.values(), default="en", label="Tag language", view=language)
        path = values.get("checkpoint_path")
        found = checkpoint_summary(path) if values.get("model") == CUSTOM and path else None
        custom = values.get("model") == CUSTOM and not (isinstance(found, dict) and found.get("folder"))
        if values.get("language") == "zh" and (custom or values.get("tag_list")):
            own_list = bool(values.get("tag_list"))
            inputs.str("tag_list_chinese", required=own_list,
                       label="Chinese tag list" + ("" if own_list else " (optional)"),
                       description="One Chinese name per line, aligned with the tag list"
                                   + ("" if own_list else "; empty: upstream's (cached, downloaded on first use)"))
            complete = bool(values.get("tag_list_chinese")) or not own_list
    else:
        inputs.bool("caption", default=True, label="Caption",
                    description="Also write a caption (the field's caption attribute, shown in the sidebar; slower)")
    inputs.list("classes", types.String(), required=False, label="Only these tags (optional)",
                description="Score only these tags (faster; same scores); empty: the whole vocabulary")
    return complete


def add_vocabulary_inputs(inputs: types.Object, values: dict[str, Any], family: str | None) -> None:
    """Your own vocabulary (RAM, RAM++): new tags are embedded with CLIP's text encoder once, then cached."""
    from fiftyone_ram.vocabulary.spec import VocabularySpec

    if family == "tag2text":  # learned queries: "Only these tags" is all it can do
        return
    inputs.list("tags", types.String(), required=False, label="Vocabulary (optional)",
                description="Answer these tags instead of the model's: its own are selected, new ones are "
                            "embedded with CLIP (RAM: upstream's prompt templates; RAM++: descriptions or templates)")
    add_setting(inputs, VocabularySpec, "tags", values, key="tags_file", required=False)
    if family in (None, "ram_plus"):
        add_setting(inputs, VocabularySpec, "descriptions", values, required=False)
    add_settings(inputs, VocabularySpec, ("keep_builtin", "new_tag_threshold", "text_encoder"), values)


def vocabulary_from_form(values: dict[str, Any]):
    """The :class:`~fiftyone_ram.vocabulary.spec.VocabularySpec` of a form (None: the model's own tags)."""
    from fiftyone_ram.vocabulary.spec import VocabularySpec

    tags = values.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")
    tags = [t.strip() for t in tags or [] if t and t.strip()]
    if values.get("tags_file"):
        if tags:
            from fiftyone_ram.vocabulary.sources import read_tags

            tags += read_tags(values["tags_file"])
        else:
            tags = values["tags_file"]  # read where the model is loaded
    asked = {"tags": tags or None, **form_values(VocabularySpec, values, ("descriptions", "keep_builtin",
                                                                           "new_tag_threshold", "text_encoder"))}
    return VocabularySpec.of(asked)


def model_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """A form's model choice and output options as ``fiftyone_ram.fiftyone.load_model`` keywords (the zoo's
    "Apply zoo model" form and ``tag_images`` build their model from these)."""
    from fiftyone_ram.fiftyone.model import RamModelConfig

    spec = tagger_spec_from_form(values, vocabulary=vocabulary_from_form(values))
    out = RamModelConfig.keys_of(spec)
    if values.get("model") not in (None, CUSTOM, "none") and "model" not in out and "config" not in out:
        out["model"] = values["model"]
    if values.get("threshold_mode") == GLOBAL and values.get("threshold") is not None:
        out["confidence_thresh"] = float(values["threshold"])
        out.pop("thresholds", None)
    classes = values.get("classes")
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",")]
    if classes:
        out["classes"] = [c for c in classes if c]
    if values.get("language"):
        out["language"] = values["language"]
    if "caption" in values and values["caption"] is not None:
        out["caption"] = bool(values["caption"])
    return out


# -- where the models run -----------------------------------------------------------------------------------


def add_executor_inputs(inputs: types.Object, ctx, what: str = "the model passes") -> None:
    """The executor choice of a form that runs a model over a view (Ray: scheduled runs only, since the
    orchestrator, not the App's server, is then Ray's driver)."""
    from fiftyone_ram.driver.ray_executor import ExecutorSettings

    add_setting(inputs, ExecutorSettings, "executor", ctx.params,
                description=f"ray: {what} on Ray Data over a cluster's workers (scheduled runs only)")
    if ctx.params.get("executor") == "ray":
        add_settings(inputs, ExecutorSettings, ("ray_address", "workers", "gpus_per_worker"), ctx.params)
        if not ctx.delegated:
            inputs.view("ray_delegated", types.Warning(
                label="The Ray executor runs only as a scheduled operation: schedule this run"))


def executor_values(params: dict[str, Any], delegated: bool) -> dict[str, Any]:
    """The executor settings of a form; Ray refused in one line unless the run is scheduled."""
    from fiftyone_ram.driver.ray_executor import ExecutorSettings

    values = form_values(ExecutorSettings, params)
    if values.get("executor") == "ray" and not delegated:
        from fiftyone_ram.errors import UserError

        raise UserError("the Ray executor runs only as a scheduled operation: schedule the run")
    return values
