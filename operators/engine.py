"""Operators ``generate_tags`` and ``clean_tags``: the RAM data engine from the App.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the work is done by
``fiftyone_ram.engine`` (the installed package), imported inside ``execute``. Both default to delegated
execution where the App can schedule it (they run models over a whole dataset), else run immediately.
``clean_tags`` also offers the review steps that follow a cleaning: apply the accepted removals (each
removed label is recorded) and undo.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

_TAG_TYPES = ("Classifications", "Classification", "Detections", "Polylines")
CAPTIONER = "captioner_"
REVIEW_PANEL = "tag_review_panel"
ACTIONS = {"clean": "Find wrong tags", "apply": "Apply the accepted removals", "undo": "Undo the apply"}


# -- form helpers ------------------------------------------------------------------------------------------


def _taggers() -> dict[str, str]:
    from fiftyone_ram.app.forms import model_choices

    return model_choices()


def _engine_inputs(inputs, ctx) -> None:
    from fiftyone_ram.app.forms import add_engine_options

    add_engine_options(inputs, ctx)


def _engine(ctx):
    from fiftyone_ram.app.forms import engine_options

    return engine_options(ctx.params, ctx.delegated)


def _captioners() -> dict[str, str]:
    from fiftyone_ram.app.forms import model_choices

    return {"none": "No captions", **model_choices(captions_only=True, custom_label="Your own Tag2Text")}


def _fields(ctx, types_: tuple[str, ...], strings: bool = False, text: bool = False) -> list[str]:
    """Fields of the dataset of the given label types (and list-of-strings / caption-text fields)."""
    from fiftyone_ram.app import field_choices as fc

    out = fc.label_fields(ctx.dataset, types_) if types_ else []
    if strings:
        out += fc.string_list_fields(ctx.dataset)
    if text:
        out += fc.text_fields(ctx.dataset)
    return out


def _fields_input(inputs, name: str, choices: list[str], label: str, description: str, params) -> None:
    """A multi-select dropdown of ``choices`` (valid names only); a note when the dataset has none."""
    if not choices:
        inputs.view(f"{name}_none", types.Notice(label=f"{label}: none in this dataset ({description})"))
        return
    prop = inputs.list(name, types.String(), label=label, description=description,
                       view=types.AutocompleteView(multiple=True, allow_user_input=False, allow_duplicates=False,
                                                   choices=[types.Choice(c, label=c) for c in choices]))
    unknown = sorted(set(params.get(name) or []) - set(choices))
    if unknown:
        prop.invalid, prop.error_message = True, f"Not a field of the right type: {', '.join(unknown)}"


def _model_inputs(inputs, params, prefix: str, choices: dict[str, str], label: str, default: str) -> None:
    """A model choice; a custom one asks for its checkpoint, architecture config and tag list."""
    radio = types.RadioGroup()
    for key, text in choices.items():
        radio.add_choice(key, label=text)
    inputs.enum(f"{prefix}model", radio.values(), default=default, label=label, view=radio)
    choice = params.get(f"{prefix}model") or default
    if choice == "none":
        return
    custom = choice == "custom"
    inputs.str(f"{prefix}checkpoint", required=custom, label="Checkpoint" + ("" if custom else " (optional)"),
               description="Path of an upstream-layout .pth on the machine that runs the operator")
    if custom:
        inputs.str(f"{prefix}config", label="Architecture config (optional)", description="JSON file")
        if prefix == CAPTIONER:  # only Tag2Text writes captions: no family to choose
            inputs.view(f"{prefix}family_note", types.Notice(label="Family: Tag2Text (the captioning model)"))
        else:
            inputs.enum(f"{prefix}family", ["ram_plus", "ram", "tag2text"], default="ram_plus",
                        label="Model family", view=types.DropdownView())
        inputs.str(f"{prefix}tag_list", label="Tag list (optional)", description="One tag per line")
        inputs.str(f"{prefix}thresholds", label="Threshold file (optional)", description="One per line")


def _load_model(params, prefix: str, default: str):
    """The tagger a form describes, or None (``none``)."""
    from fiftyone_ram import load_tagger

    choice = params.get(f"{prefix}model") or default
    if choice == "none":
        return None
    device = params.get("device") if params.get("device") not in (None, "auto") else None
    precision = params.get("precision") or None
    if choice == "custom":
        family = "tag2text" if prefix == CAPTIONER else params.get(f"{prefix}family") or "ram_plus"
        return load_tagger(params.get(f"{prefix}config") or family, params[f"{prefix}checkpoint"], family=family,
                           tag_list=params.get(f"{prefix}tag_list") or None,
                           thresholds=params.get(f"{prefix}thresholds") or None, device=device, precision=precision)
    return load_tagger(choice, params.get(f"{prefix}checkpoint") or None, device=device, precision=precision)


def _progress(ctx):
    return lambda fraction, label: ctx.set_progress(progress=fraction, label=label)


def _device_input(inputs) -> None:
    device = types.DropdownView()
    for choice in ("auto", "cpu", "cuda"):
        device.add_choice(choice, label=choice)
    inputs.enum("device", device.values(), default="auto", label="Device", view=device)
    from fiftyone_ram.app.forms import add_precision_option

    add_precision_option(inputs)


# -- operators -----------------------------------------------------------------------------------------


class GenerateTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="generate_tags",
            label="Generate tags (RAM data engine)",
            description="Merge existing, caption-parsed, predicted and Tag2Text-captioned tags, with provenance",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
            resolve_execution_options_on_change=True,  # the target view's size and the step decide
        )

    def resolve_execution_options(self, ctx):
        """Scheduling is the default only where the App can schedule (see ``fiftyone_ram.app.execution``)."""
        from fiftyone_ram.app import execution

        return execution.execution_options(len(ctx.target_view()), prefer_delegated=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Generate tags for")
        params = ctx.params
        out = inputs.str("out_field", default="generated", required=True, label="Output field",
                         description="Classifications; each tag has `sources`, `source` and its confidence")
        name = params.get("out_field") or "generated"
        if not name.isidentifier():
            out.invalid, out.error_message = True, "Use letters, digits and underscores"
        elif name in ctx.dataset.get_field_schema():
            inputs.bool("overwrite", default=False, label=f"Replace the existing '{name}'")
        others = [f for f in _fields(ctx, _TAG_TYPES, strings=True) if f != name]
        _fields_input(inputs, "tag_fields", others, "Existing tags", "fields whose tags are kept as 'original'",
                      params)
        _fields_input(inputs, "caption_fields", _fields(ctx, (), text=True), "Caption fields",
                      "text fields parsed into 'parsed' tags", params)
        inputs.str("parser_tags", label="Tag list for parsing (optional)",
                   description="Tag list or saved label system file; RAM's 4,585 tags if empty")
        inputs.bool("predict", default=True, label="Add the tags a tagger predicts ('predicted')")
        if params.get("predict", True):
            _model_inputs(inputs, params, "", _taggers(), "Tagger", "ram_plus_swin_large_14m")
            inputs.float("threshold", label="One threshold (optional)", min=0.0, max=1.0,
                         description="Empty: the per-class thresholds")
        _model_inputs(inputs, params, CAPTIONER, _captioners(), "Captioner ('captioned' tags)", "none")
        _device_input(inputs)
        inputs.int("batch_size", default=8, min=1, label="Batch size")
        _engine_inputs(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Generate tags"))

    def execute(self, ctx):
        from fiftyone_ram.engine.generation import check_generation, generate_tags

        params = ctx.params
        out_field = params.get("out_field") or "generated"
        check_generation(ctx.target_view(), out_field, tag_fields=params.get("tag_fields") or (),
                         caption_fields=params.get("caption_fields") or (),
                         overwrite=bool(params.get("overwrite")))  # before the models load
        engine, ray_options = _engine(ctx)
        tagger = _load_model(params, "", "ram_plus_swin_large_14m") if params.get("predict", True) else None
        captioner = _load_model(params, CAPTIONER, "none")
        summary = generate_tags(
            ctx.target_view(), out_field, tag_fields=params.get("tag_fields") or (),
            caption_fields=params.get("caption_fields") or (), tagger=tagger, captioner=captioner,
            tag_list=params.get("parser_tags") or None, threshold=params.get("threshold"),
            batch_size=params.get("batch_size") or 8, overwrite=bool(params.get("overwrite")),
            progress=_progress(ctx), engine=engine, ray_options=ray_options)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return _flatten(summary.to_dict(), "added")

    def resolve_output(self, ctx):
        from fiftyone_ram.engine.generation import SOURCES

        rows = [("out_field", "str", "Field"), ("samples", "int", "Samples"), ("total", "int", "Tags")]
        rows += [(f"added_{source}", "int", f"Tags added as '{source}'") for source in SOURCES]
        rows += [("unreadable_files", "str", "Images that could not be read")]
        return types.Property(_shown(ctx, rows), view=types.View(label="Tags generated"))


class CleanTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="clean_tags",
            label="Clean tags (RAM data engine)",
            description="Flag wrong tags from their regions (detector or boxes), crop clusters and the tagger; "
                        "review, apply, undo",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
            resolve_execution_options_on_change=True,  # the target view's size and the step decide
        )

    def resolve_execution_options(self, ctx):
        """Scheduling is the default only where the App can schedule (see ``fiftyone_ram.app.execution``)."""
        from fiftyone_ram.app import execution

        return execution.execution_options(len(ctx.target_view()), prefer_delegated=ctx.params.get("action", "clean") == "clean")

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Clean")
        params = ctx.params
        actions = types.RadioGroup()
        for key, text in ACTIONS.items():
            actions.add_choice(key, label=text)
        inputs.enum("action", actions.values(), default="clean", label="Step", view=actions)
        fields = _fields(ctx, _TAG_TYPES, strings=True)
        if not fields:
            inputs.view("none", types.Warning(label="No tag field (Classifications, Detections, tags...)"))
            return types.Property(inputs)
        inputs.enum("tag_field", fields, required=True, default=fields[0], label="Tags to clean",
                    view=types.DropdownView())
        action = params.get("action") or "clean"
        if action == "apply":
            inputs.enum("accept", ["flagged", "marked"], default="flagged", label="Remove",
                        description="flagged: every flagged tag not label-tagged 'keep' (and those tagged 'remove'); "
                                    "marked: only tags label-tagged 'remove'", view=types.RadioGroup())
        if action != "clean":
            return types.Property(inputs, view=types.View(label="Clean tags"))
        scope = types.RadioGroup()
        for key, text in (("all", "All tags"), ("list", "These tags"), ("top", "The most frequent")):
            scope.add_choice(key, label=text)
        inputs.enum("scope", scope.values(), default="all", label="Categories", view=scope)
        if params.get("scope") == "list":
            inputs.list("categories", types.String(), required=True, label="Tags")
        elif params.get("scope") == "top":
            inputs.int("top", default=50, min=1, label="How many")
        boxes = _fields(ctx, ("Detections",))
        source = types.RadioGroup()
        source.add_choice("detector", label="Grounding-DINO, prompted with each tag")
        if boxes:
            source.add_choice("field", label="A Detections field")
        # Boxes already in the dataset need no download: the default when there are some.
        inputs.enum("regions", source.values(), default="field" if boxes else "detector", label="Regions",
                    view=source)
        if (params.get("regions") or ("field" if boxes else "detector")) == "field" and boxes:
            inputs.enum("regions_field", boxes, required=True, default=boxes[0], label="Boxes",
                        view=types.DropdownView())
        else:
            inputs.str("detector", default="IDEA-Research/grounding-dino-tiny", label="Detector",
                       description="Hub id (downloaded once) or folder")
            inputs.float("box_threshold", default=0.35, min=0.0, max=1.0, label="Box threshold")
            inputs.float("text_threshold", default=0.25, min=0.0, max=1.0, label="Text threshold")
        inputs.int("max_regions", default=3, min=1, label="Regions per tag")
        inputs.enum("embedder", ["ram", "clip"], default="ram", label="Crop embeddings",
                    description="ram: the tagger's image encoder; clip: a CLIP image encoder",
                    view=types.RadioGroup())
        if params.get("embedder") == "clip":
            inputs.str("clip_model", default="openai/clip-vit-base-patch16", label="CLIP model")
        inputs.bool("check", default=True, label="Also flag tags the tagger does not predict on their regions")
        if params.get("embedder", "ram") == "ram" or params.get("check", True):
            _model_inputs(inputs, params, "", _taggers(), "Tagger",
                          "ram_plus_swin_large_14m")
        inputs.float("fraction", default=0.1, min=0.01, max=0.49, label="Expected share of wrong tags")
        inputs.enum("rule", ["adaptive", "quota"], default="adaptive", label="Outlier rule",
                    description="adaptive: what stands out, up to twice the share; quota: exactly the share of "
                                "each tag (the paper's rule)", view=types.RadioGroup())
        inputs.bool("per_category", default=False, label="Judge each tag alone",
                    description="Do not compare with other tags' modes (for overlapping tags: animal / dog)")
        run_key = f"ram_clean_{params.get('tag_field') or fields[0]}"
        if ctx.dataset.has_run(run_key):
            state = ctx.dataset.load_run_results(run_key, cache=False)
            done = len(getattr(state, "categories_done", None) or [])
            finished = (getattr(state, "status", None) or "completed") == "completed"
            again = types.RadioGroup()
            again.add_choice("resume", label="Resume (skip the categories done)")
            again.add_choice("overwrite", label="Start again")
            inputs.enum("existing", again.values(), default="resume", view=again,
                        label="These tags were cleaned before" if finished else
                        f"An earlier cleaning of these tags did not finish ({done} categories done)")
        _device_input(inputs)
        inputs.bool("open_panel", default=True, label="Open the Tag review panel when done")
        inputs.int("categories_per_batch", default=32, min=1, label="Categories per batch")
        inputs.int("batch_size", default=8, min=1, label="Images per batch")
        _engine_inputs(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Clean tags"))

    def execute(self, ctx):
        from fiftyone_ram.engine.cleaning import clean_tags
        from fiftyone_ram.engine.crops import make_encoder
        from fiftyone_ram.engine.regions import make_regions
        from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

        params = ctx.params
        view = ctx.target_view()
        action = params.get("action") or "clean"
        if action == "apply":
            result = apply_cleaning(view, params["tag_field"], accept=params.get("accept") or "flagged")
        elif action == "undo":
            result = undo_cleaning(view, params["tag_field"])
        else:
            result = _flatten(self._clean(ctx, view, clean_tags, make_encoder, make_regions).to_dict(), "flagged")
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
            if action == "clean" and params.get("open_panel", True):
                ctx.ops.open_panel(REVIEW_PANEL, layout="horizontal", state={"tag_field": params["tag_field"]})
        return result

    @staticmethod
    def _clean(ctx, view, clean_tags, make_encoder, make_regions):
        from fiftyone_ram.engine.cleaning import check_cleaning

        params = ctx.params
        check_cleaning(view, params["tag_field"], resume=params.get("existing") == "resume",
                       overwrite=params.get("existing") == "overwrite")  # before the models load
        engine, ray_options = _engine(ctx)
        embedder, check = params.get("embedder") or "ram", params.get("check", True)
        tagger = _load_model(params, "", "ram_plus_swin_large_14m") if embedder == "ram" or check else None
        device = params.get("device") if params.get("device") not in (None, "auto") else None
        encoder = make_encoder(embedder, tagger=tagger, clip_model=params.get("clip_model"), device=device,
                               check=bool(check))
        boxes = _fields(ctx, ("Detections",))
        by_field = (params.get("regions") or ("field" if boxes else "detector")) == "field"
        regions = make_regions(view, field=(params.get("regions_field") or boxes[0]) if by_field else None,
                               detector=params.get("detector"), box_threshold=params.get("box_threshold", 0.35),
                               text_threshold=params.get("text_threshold", 0.25),
                               max_regions=params.get("max_regions") or 3, device=device)
        scope = params.get("scope") or "all"
        categories = params.get("categories") if scope == "list" else params.get("top") if scope == "top" else None
        return clean_tags(view, params["tag_field"], regions=regions, encoder=encoder, categories=categories,
                          fraction=params.get("fraction") or 0.1,
                          outlier_options={"rule": params.get("rule") or "adaptive",
                                           "cross_category": not params.get("per_category")},
                          categories_per_batch=params.get("categories_per_batch") or 32,
                          batch_size=params.get("batch_size") or 8, resume=params.get("existing") == "resume",
                          overwrite=params.get("existing") == "overwrite", progress=_progress(ctx),
                          engine=engine, ray_options=ray_options)

    def resolve_output(self, ctx):
        from fiftyone_ram.engine.cleaning import REASONS

        rows = [("tag_field", "str", "Tags"), ("tags_checked", "int", "Tags checked"),
                ("flagged_total", "int", "Tags flagged")]
        rows += [(f"flagged_{reason}", "int", f"Flagged: {reason.replace('_', ' ')}") for reason in REASONS]
        rows += [("review_field", "str", "Review field (flags; open the Tag review panel)"),
                 ("view_name", "str", "Saved view to review"), ("unreadable_files", "str", "Images not read"),
                 ("removed", "int", "Tags removed (apply)"), ("samples", "int", "Samples changed"),
                 ("restored", "int", "Tags put back (undo)"),
                 ("not_restored", "int", "Tags not put back: changed since the apply (undo)"),
                 ("message", "str", "Undo")]
        return types.Property(_shown(ctx, rows), view=types.View(label="Clean tags"))


def _flatten(result: dict, counts_key: str) -> dict:
    """``result`` plus one top-level entry per count of ``result[counts_key]`` and the unreadable files as
    one line: the App's output view shows top-level numbers and strings, not nested objects."""
    out = dict(result)
    out.update({f"{counts_key}_{k}": v for k, v in (result.get(counts_key) or {}).items()})
    unreadable = result.get("unreadable") or {}
    if unreadable:
        names = [path.rsplit("/", 1)[-1] for path in unreadable]
        out["unreadable_files"] = f"{len(names)}: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return out


def _shown(ctx, rows: list[tuple[str, str, str]]):
    """Output rows for the values the run returned (no empty heading, no 'No value provided' row); all of
    them when there are no results yet (the schema)."""
    results = ctx.results or {}
    outputs = types.Object()
    for key, kind, label in rows:
        if not results or results.get(key) not in (None, "", {}, []):
            getattr(outputs, kind)(key, label=label)
    return outputs


def register(p):
    p.register(GenerateTags)
    p.register(CleanTags)
