"""Operators ``generate_tags`` and ``clean_tags``: the RAM data engine from the App.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the forms are built from the jobs'
settings (``GenerateJob``, ``CleanJob``, ``ReviewJob``) and the model choice (``fiftyone_ram.app.forms``), the
work is ``fiftyone_ram.engine``'s. Both default to scheduled execution where the App can schedule it (they run
models over a whole dataset), else run immediately; either way a failure shows as one line. ``clean_tags``
also offers the review steps that follow a cleaning: apply the accepted removals (each removed label is
recorded) and undo.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

_TAG_TYPES = ("Classifications", "Classification", "Detections", "Polylines")
CAPTIONER = "captioner_"
REVIEW_PANEL = "tag_review_panel"
ACTIONS = {"clean": "Find wrong tags", "apply": "Apply the accepted removals", "undo": "Undo the apply"}


def _fields(ctx, types_: tuple[str, ...], strings: bool = False, text: bool = False) -> list[str]:
    """Fields of the dataset of the given label types (and list-of-strings / caption-text fields)."""
    from fiftyone_ram.app import field_choices as fc

    out = fc.label_fields(ctx.dataset, types_) if types_ else []
    if strings:
        out += fc.string_list_fields(ctx.dataset)
    if text:
        out += fc.text_fields(ctx.dataset)
    return out


def _fields_input(inputs, name: str, choices: list[str], params, cls, setting: str) -> None:
    """A multi-select dropdown of ``choices`` (valid names only) for a job's field-list setting; a note when
    the dataset has none."""
    from fiftyone_ram.jobs import HELP, LABEL, field_of

    meta = field_of(cls, setting).metadata
    label, description = meta[LABEL], meta[HELP]
    if not choices:
        inputs.view(f"{name}_none", types.Notice(label=f"{label}: none in this dataset ({description})"))
        return
    prop = inputs.list(name, types.String(), label=label, description=description,
                       view=types.AutocompleteView(multiple=True, allow_user_input=False, allow_duplicates=False,
                                                   choices=[types.Choice(c, label=c) for c in choices]))
    unknown = sorted(set(params.get(name) or []) - set(choices))
    if unknown:
        prop.invalid, prop.error_message = True, f"Not a field of the right type: {', '.join(unknown)}"


def _progress(ctx):
    return lambda fraction, label: ctx.set_progress(progress=fraction, label=label)


class GenerateTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="generate_tags",
            label="Generate tags (RAM data engine)",
            description="Merge existing, caption-parsed, predicted and Tag2Text-captioned tags, with provenance",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App show their progress and their failures
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
        from fiftyone_ram.app import forms
        from fiftyone_ram.engine.generation import GenerateJob

        inputs = types.Object()
        inputs.view_target(ctx, action_description="Generate tags for")
        params = ctx.params
        out = forms.add_setting(inputs, GenerateJob, "out_field", params, required=True)
        name = params.get("out_field") or GenerateJob.default("out_field")
        if not name.isidentifier():
            out.invalid, out.error_message = True, "Use letters, digits and underscores"
        elif name in ctx.dataset.get_field_schema():
            forms.add_setting(inputs, GenerateJob, "overwrite", params, label=f"Replace the existing '{name}'")
        others = [f for f in _fields(ctx, _TAG_TYPES, strings=True) if f != name]
        _fields_input(inputs, "tag_fields", others, params, GenerateJob, "tag_fields")
        _fields_input(inputs, "caption_fields", _fields(ctx, (), text=True), params, GenerateJob, "caption_fields")
        forms.add_setting(inputs, GenerateJob, "parser_tags", params)
        inputs.bool("predict", default=True, label="Add the tags a tagger predicts ('predicted')")
        if params.get("predict", True):
            forms.add_tagger_inputs(inputs, params, label="Tagger", precision=False)
            forms.add_setting(inputs, GenerateJob, "threshold", params)
        forms.add_tagger_inputs(inputs, params, prefix=CAPTIONER, label="Captioner ('captioned' tags)",
                                captions_only=True, none_label="No captions", precision=False)
        _device_and_precision(inputs)
        forms.add_setting(inputs, GenerateJob, "batch_size", params)
        forms.add_executor_inputs(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Generate tags"))

    def execute(self, ctx):
        from fiftyone_ram import load_tagger
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.engine.generation import GenerateJob

        params = ctx.params
        job = forms.job_from_form(GenerateJob, params, ("out_field", "tag_fields", "caption_fields", "parser_tags",
                                                        "threshold", "overwrite", "batch_size"),
                                  **forms.executor_values(params, ctx.delegated))
        run_options = _run_options(params)

        def work(progress):
            view = ctx.target_view()
            job.check(view)  # before the models load
            tagger = load_tagger(forms.tagger_spec_from_form(params, **run_options)) \
                if params.get("predict", True) else None
            captioner = forms.tagger_spec_from_form(params, prefix=CAPTIONER, optional=True, **run_options)
            captioner = load_tagger(captioner) if captioner is not None else None
            summary = job.run(view, tagger, captioner, progress=progress)
            return _flatten(summary.to_dict(), "added")

        return execution.run(ctx, work, label="Generating tags", show=lambda result: execution.show_result(ctx, self, result, reload=True))

    def resolve_output(self, ctx):
        from fiftyone_ram.engine.generation import SOURCES

        rows = [("out_field", "str", "Field"), ("samples", "int", "Samples"), ("total", "int", "Tags")]
        rows += [(f"added_{source}", "int", f"Tags added as '{source}'") for source in SOURCES]
        rows += [("unreadable_files", "str", "Images that could not be read")]
        return types.Property(_shown(ctx, rows), view=types.View(label="Tags generated"))


def _device_and_precision(inputs) -> None:
    """One device and precision for every model of the run."""
    from fiftyone_ram.app.forms import add_precision_option

    device = types.DropdownView()
    for choice in ("auto", "cpu", "cuda"):
        device.add_choice(choice, label=choice)
    inputs.enum("device", ["auto", "cpu", "cuda"], default="auto", label="Device", view=device)
    add_precision_option(inputs)


def _run_options(params) -> dict:
    """The device and precision of the form as tagger spec fields (auto: the spec's default)."""
    out = {}
    if params.get("device") not in (None, "", "auto"):
        out["device"] = params["device"]
    if params.get("precision") not in (None, "", "auto"):
        out["precision"] = params["precision"]
    return out


class CleanTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="clean_tags",
            label="Clean tags (RAM data engine)",
            description="Flag wrong tags from their regions (detector or boxes), crop clusters and the tagger; "
                        "review, apply, undo",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App show their progress and their failures
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
            resolve_execution_options_on_change=True,  # the target view's size and the step decide
        )

    def resolve_execution_options(self, ctx):
        """Scheduling is the default only where the App can schedule (see ``fiftyone_ram.app.execution``)."""
        from fiftyone_ram.app import execution

        return execution.execution_options(len(ctx.target_view()),
                                           prefer_delegated=ctx.params.get("action", "clean") == "clean")

    def resolve_input(self, ctx):
        from fiftyone_ram.app import forms
        from fiftyone_ram.driver import runs
        from fiftyone_ram.engine.cleaning import CleanJob
        from fiftyone_ram.engine.review import ReviewJob

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
            forms.add_setting(inputs, ReviewJob, "accept", params)
        if action != "clean":
            return types.Property(inputs, view=types.View(label="Clean tags"))
        scope = types.RadioGroup()
        for key, text in (("all", "All tags"), ("list", "These tags"), ("top", "The most frequent")):
            scope.add_choice(key, label=text)
        inputs.enum("scope", scope.values(), default="all", label="Categories", view=scope)
        if params.get("scope") == "list":
            forms.add_setting(inputs, CleanJob, "categories", params, required=True)
        elif params.get("scope") == "top":
            forms.add_setting(inputs, CleanJob, "top", params, default=50)
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
            forms.add_settings(inputs, CleanJob, ("detector", "box_threshold", "text_threshold"), params)
        forms.add_settings(inputs, CleanJob, ("max_regions", "embedder"), params)
        if params.get("embedder") == "clip":
            forms.add_setting(inputs, CleanJob, "clip_model", params)
        forms.add_setting(inputs, CleanJob, "region_check", params)
        if (params.get("embedder") or CleanJob.default("embedder")) == "ram" or params.get("region_check", True):
            forms.add_tagger_inputs(inputs, params, label="Tagger", precision=False)
        forms.add_settings(inputs, CleanJob, ("fraction", "rule", "per_category"), params)
        tag_field = params.get("tag_field") or fields[0]
        previous = runs.load(ctx.dataset, "clean", tag_field)
        if previous is not None:
            done = len(runs.load_state(ctx.dataset, "clean", tag_field).get("categories_done") or [])
            again = types.RadioGroup()
            again.add_choice("resume", label="Resume (skip the categories done)")
            again.add_choice("overwrite", label="Start again")
            inputs.enum("existing", again.values(), default="resume", view=again,
                        label="These tags were cleaned before" if previous.finished else
                        f"An earlier cleaning of these tags did not finish ({done} categories done)")
        _device_and_precision(inputs)
        inputs.bool("open_panel", default=True, label="Open the Tag review panel when done")
        forms.add_settings(inputs, CleanJob, ("categories_per_batch", "batch_size"), params)
        forms.add_executor_inputs(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Clean tags"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution

        params = ctx.params
        action = params.get("action") or "clean"

        def show(result):
            yield ctx.trigger("reload_dataset")
            if action == "clean" and params.get("open_panel", True):
                yield from execution.show_panel(ctx, self, REVIEW_PANEL, {"tag_field": params["tag_field"]})
            yield from execution.show_result(ctx, self, result)

        return execution.run(ctx, lambda progress: self._work(ctx, action, progress), label="Cleaning tags",
                             show=show)

    def _work(self, ctx, action: str, progress):
        from fiftyone_ram import load_tagger
        from fiftyone_ram.app import forms
        from fiftyone_ram.engine.cleaning import CleanJob
        from fiftyone_ram.engine.review import ReviewJob

        params = ctx.params
        view = ctx.target_view()
        if action in ("apply", "undo"):
            review = forms.job_from_form(ReviewJob, params, ("tag_field", "accept"), action=action)
            return review.run(view)
        scope = params.get("scope") or "all"
        boxes = _fields(ctx, ("Detections",))
        by_field = (params.get("regions") or ("field" if boxes else "detector")) == "field" and boxes
        run_options = _run_options(params)
        job = forms.job_from_form(
            CleanJob, params, ("tag_field", "detector", "box_threshold", "text_threshold", "max_regions", "embedder",
                               "clip_model", "region_check", "fraction", "rule", "per_category",
                               "categories_per_batch", "batch_size"),
            categories=tuple(params.get("categories") or ()) if scope == "list" else (),
            top=params.get("top") if scope == "top" else None,
            regions_field=(params.get("regions_field") or boxes[0]) if by_field else None,
            resume=params.get("existing") == "resume", overwrite=params.get("existing") == "overwrite",
            device=run_options.get("device"), **forms.executor_values(params, ctx.delegated))
        job.check(view)  # before the models load
        tagger = load_tagger(forms.tagger_spec_from_form(params, **run_options)) if job.needs_tagger else None
        return _flatten(job.run(view, tagger, progress=progress).to_dict(), "flagged")

    def resolve_output(self, ctx):
        from fiftyone_ram.engine.cleaning import FLAG_REASONS

        rows = [("tag_field", "str", "Tags"), ("tags_checked", "int", "Tags checked"),
                ("flagged_total", "int", "Tags flagged")]
        rows += [(f"flagged_{reason}", "int", f"Flagged: {reason.replace('_', ' ')}") for reason in FLAG_REASONS]
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
