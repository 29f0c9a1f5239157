"""Operators ``generate_tags`` and ``clean_tags``: the RAM data engine from the App.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the work is done by
``fiftyone_ram.engine`` (the installed package), imported inside ``execute``. Both default to delegated
execution: they run models over a whole dataset. ``clean_tags`` also offers the review steps that follow a
cleaning: apply the accepted removals (the original field is kept) and undo.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

_TAG_TYPES = ("Classifications", "Classification", "Detections", "Polylines")
ACTIONS = {"clean": "Find wrong tags", "apply": "Apply the accepted removals", "undo": "Undo the apply"}


# -- form helpers ------------------------------------------------------------------------------------------


def _taggers() -> dict[str, str]:
    from fiftyone_ram.fiftyone.forms import model_choices

    return model_choices()


def _captioners() -> dict[str, str]:
    from fiftyone_ram.fiftyone.forms import model_choices

    return {"none": "No captions", **model_choices(captions_only=True, custom_label="Your own Tag2Text")}


def _fields(ctx, types_: tuple[str, ...], strings: bool = False, text: bool = False) -> list[str]:
    import fiftyone as fo

    out = []
    for name, field in ctx.dataset.get_field_schema().items():
        if isinstance(field, fo.EmbeddedDocumentField) and field.document_type.__name__ in types_:
            out.append(name)
        elif isinstance(field, fo.ListField) and isinstance(field.field, fo.StringField) and (strings or text):
            out.append(name)
        elif text and isinstance(field, fo.StringField) and name != "filepath":
            out.append(name)
    return out


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
        inputs.enum(f"{prefix}family", ["ram_plus", "ram", "tag2text"], default="ram_plus", label="Model family",
                    view=types.DropdownView())
        inputs.str(f"{prefix}tag_list", label="Tag list (optional)", description="One tag per line")
        inputs.str(f"{prefix}thresholds", label="Threshold file (optional)", description="One per line")


def _load_model(params, prefix: str, default: str):
    """The tagger a form describes, or None (``none``)."""
    from fiftyone_ram import load_tagger

    choice = params.get(f"{prefix}model") or default
    if choice == "none":
        return None
    device = params.get("device") if params.get("device") not in (None, "auto") else None
    if choice == "custom":
        return load_tagger(params.get(f"{prefix}config") or params.get(f"{prefix}family") or "ram_plus",
                           params[f"{prefix}checkpoint"], family=params.get(f"{prefix}family"),
                           tag_list=params.get(f"{prefix}tag_list") or None,
                           thresholds=params.get(f"{prefix}thresholds") or None, device=device)
    return load_tagger(choice, params.get(f"{prefix}checkpoint") or None, device=device)


def _progress(ctx):
    return lambda fraction, label: ctx.set_progress(progress=fraction, label=label)


def _device_input(inputs) -> None:
    device = types.DropdownView()
    for choice in ("auto", "cpu", "cuda"):
        device.add_choice(choice, label=choice)
    inputs.enum("device", device.values(), default="auto", label="Device", view=device)


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
        )

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
        inputs.list("tag_fields", types.String(), label="Existing tags",
                    description="Fields whose tags are kept as 'original': " +
                                ", ".join(_fields(ctx, _TAG_TYPES, strings=True)))
        inputs.list("caption_fields", types.String(), label="Caption fields",
                    description="Parsed into 'parsed' tags: " + ", ".join(_fields(ctx, (), text=True)))
        inputs.str("parser_tags", label="Tag list for parsing (optional)",
                   description="Tag list or saved label system file; RAM's 4,585 tags if empty")
        inputs.bool("predict", default=True, label="Add the tags a tagger predicts ('predicted')")
        if params.get("predict", True):
            _model_inputs(inputs, params, "", _taggers(), "Tagger", "ram_plus_swin_large_14m")
            inputs.float("threshold", label="One threshold (optional)", min=0.0, max=1.0,
                         description="Empty: the per-class thresholds")
        _model_inputs(inputs, params, "captioner_", _captioners(), "Captioner ('captioned' tags)", "none")
        _device_input(inputs)
        inputs.int("batch_size", default=8, min=1, label="Batch size")
        return types.Property(inputs, view=types.View(label="Generate tags"))

    def execute(self, ctx):
        from fiftyone_ram.engine.generation import check_generation, generate_tags

        params = ctx.params
        out_field = params.get("out_field") or "generated"
        check_generation(ctx.target_view(), out_field, tag_fields=params.get("tag_fields") or (),
                         caption_fields=params.get("caption_fields") or (),
                         overwrite=bool(params.get("overwrite")))  # before the models load
        tagger = _load_model(params, "", "ram_plus_swin_large_14m") if params.get("predict", True) else None
        captioner = _load_model(params, "captioner_", "none")
        summary = generate_tags(
            ctx.target_view(), out_field, tag_fields=params.get("tag_fields") or (),
            caption_fields=params.get("caption_fields") or (), tagger=tagger, captioner=captioner,
            tag_list=params.get("parser_tags") or None, threshold=params.get("threshold"),
            batch_size=params.get("batch_size") or 8, overwrite=bool(params.get("overwrite")),
            progress=_progress(ctx))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return summary.to_dict()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("out_field", label="Field")
        outputs.int("samples", label="Samples")
        outputs.int("total", label="Tags")
        outputs.obj("added", label="Tags added by each source")
        return types.Property(outputs, view=types.View(label="Tags generated"))


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
        )

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
        inputs.enum("regions", source.values(), default="detector", label="Regions", view=source)
        if params.get("regions") == "field" and boxes:
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
        inputs.int("categories_per_batch", default=32, min=1, label="Categories per batch")
        inputs.int("batch_size", default=8, min=1, label="Images per batch")
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
            result = self._clean(ctx, view, clean_tags, make_encoder, make_regions).to_dict()
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result

    @staticmethod
    def _clean(ctx, view, clean_tags, make_encoder, make_regions):
        from fiftyone_ram.engine.cleaning import check_cleaning

        params = ctx.params
        check_cleaning(view, params["tag_field"], resume=params.get("existing") == "resume",
                       overwrite=params.get("existing") == "overwrite")  # before the models load
        embedder, check = params.get("embedder") or "ram", params.get("check", True)
        tagger = _load_model(params, "", "ram_plus_swin_large_14m") if embedder == "ram" or check else None
        device = params.get("device") if params.get("device") not in (None, "auto") else None
        encoder = make_encoder(embedder, tagger=tagger, clip_model=params.get("clip_model"), device=device,
                               check=bool(check))
        regions = make_regions(view, field=params.get("regions_field") if params.get("regions") == "field" else None,
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
                          overwrite=params.get("existing") == "overwrite", progress=_progress(ctx))

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("tag_field", label="Tags")
        outputs.int("flagged_total", label="Tags flagged")
        outputs.str("view_name", label="Saved view to review")
        outputs.int("removed", label="Tags removed (apply)")
        outputs.int("restored", label="Tags put back (undo)")
        outputs.int("not_restored", label="Tags not put back: changed since the apply (undo)")
        outputs.str("message", label="Undo")
        return types.Property(outputs, view=types.View(label="Clean tags"))


def register(p):
    p.register(GenerateTags)
    p.register(CleanTags)
