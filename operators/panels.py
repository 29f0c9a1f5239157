"""Panels ``tag_evaluation_panel``, ``tag_review_panel``, ``sample_tags_panel`` and ``pipeline_panel``: tag
evaluations (one, or several side by side with their PR curves overlaid: a comparison of taggers), cleaning
reviews, one sample's tags with their confidences, and the per-round report of a pipeline, in the App.

The Tag evaluation panel replaces, for tag runs, what the built-in Model Evaluation panel gets wrong for
multi-label results (see ``fiftyone_ram.evaluation.tables``): a per-class table whose confidence averages
only predicted tags, PR curves, and a confusion of missed tags with the wrong tags predicted instead (not
"x × (none)"). Its buttons open the threshold-tuning operator and show a class's errors in the grid.

The Tag review panel is the review step of cleaning: it shows only the field under review, with its flags,
lists the flagged tags with one-click Keep / Remove, and applies or undoes the removals
(``fiftyone_ram.engine.review``).

The Pipeline panel reads the run store's pipeline records (``fiftyone_ram.pipeline.report``): a table of the
rounds (tags added, removed and kept, agreement with the reference, the validation mAP / CP / CR of each round's
model) and their plot; a round's row shows the tags it added or removed in the grid, by their provenance.
Thin on purpose: the numbers come from the package.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

TUNE = "@fiftyone-ram/ram/tune_tag_thresholds"


#: The Tag evaluation panel's tabs: one click from the summary to any of them.
EVALUATION_TABS = {"classes": "Classes", "curves": "PR curves", "confusions": "Confusions", "compare": "Compare runs"}
#: The per-class table's columns: short enough for a panel split beside the grid (~550 px).
CLASS_COLUMNS = (("class", "Class"), ("ap", "AP"), ("rates", "P / R"), ("counts", "TP / FP / FN"))
#: The side-by-side table of several runs: the headline figures only (the same width budget).
COMPARE_COLUMNS = (("run", "Run"), ("mAP", "mAP"), ("CP", "CP"), ("CR", "CR"), ("OP", "OP"), ("OR", "OR"))


class TagEvaluationPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(name="tag_evaluation_panel", label="Tag evaluation", icon="query_stats",
                               surfaces="grid", help_markdown="Multi-label results of `evaluate_tags` runs")

    def on_load(self, ctx):
        self._load(ctx)

    def on_change_dataset(self, ctx):  # a run finished (the operators reload the dataset): a new key may be there
        self._load(ctx)

    def on_change_key(self, ctx):
        ctx.panel.state.eval_key = ctx.params.get("value")
        ctx.panel.state.chosen = True  # the user's choice: kept when newer runs appear
        ctx.panel.state.pr_class = None
        self._load(ctx)

    def on_change_tab(self, ctx):
        ctx.panel.state.tab = ctx.params.get("value")

    def on_change_class(self, ctx):
        value = ctx.params.get("value")
        ctx.panel.state.pr_class = value.get("value") if isinstance(value, dict) else value
        self._load(ctx)

    def _key(self, ctx, keys: list[str]) -> str | None:
        """The key shown: the one the user chose while it exists, else the latest run."""
        state = ctx.panel.state
        key = state.eval_key if state.chosen and state.eval_key in keys else (keys[-1] if keys else None)
        state.eval_key = key
        return key

    def on_change_compare(self, ctx):
        ctx.panel.state.compare_keys = [k for k in ctx.params.get("value") or [] if k]
        self._load(ctx)

    def _load(self, ctx):
        from fiftyone_ram.evaluation import tables

        key = self._key(ctx, _tag_eval_keys(ctx.dataset))
        if key is None:
            ctx.ops.set_panel_data({})
            return
        results = ctx.dataset.load_evaluation_results(key)
        figures = tables.summary_figures(results)
        head = (f"**{results.config.pred_field}** against **{results.config.gt_field}**: "
                f"{figures.get('num_samples')} samples, {figures.get('num_classes')} classes")
        values = " · ".join(f"{k} **{figures[k]}**" for k in tables.SUMMARY_LABELS if figures.get(k) is not None)
        notes = [f"Mean confidence of the predicted tags: **{tables.average_confidence(results)}**"]
        notes += tables.summary_notes(results)
        ctx.panel.state.summary = "\n\n".join([head, values, *notes])
        chosen = ctx.panel.state.pr_class
        names = results.classes.tolist()
        # The whole data at once: a patch would merge lists by position (a one-class PR plot kept the other
        # two curves of the previous plot; a shorter table its old rows).
        keys = _tag_eval_keys(ctx.dataset)
        runs = {k: ctx.dataset.load_evaluation_results(k) for k in ctx.panel.state.compare_keys or [] if k in keys}
        rows = [{**row, "rates": f"{row['precision']} / {row['recall']}",
                 "counts": f"{row['tp']} / {row['fp']} / {row['fn']}"} for row in tables.class_rows(results)]
        ctx.ops.set_panel_data({"classes": rows,
                                "confusions": tables.confusions(ctx.dataset.load_evaluation_view(key), results,
                                                                top=30),
                                _pr_key(chosen if chosen in names else None):
                                    tables.pr_traces(results, [chosen] if chosen in names else None),
                                "comparison": tables.comparison_rows(runs),
                                "comparison_pr": tables.comparison_traces(runs)})

    def tune(self, ctx):
        ctx.prompt(TUNE, params={"eval_key": ctx.panel.state.eval_key})

    def show_errors(self, ctx):
        """The samples where the chosen class was missed or wrongly predicted, in the grid."""
        from fiftyone import ViewField as F

        from fiftyone_ram.evaluation.tables import class_rows

        key, index = ctx.panel.state.eval_key, ctx.params.get("row")
        if not key or not isinstance(index, int):
            return
        rows = class_rows(ctx.dataset.load_evaluation_results(key))  # the table's rows (the App sends the index)
        if not 0 <= index < len(rows):
            return
        cls = rows[index]["class"]
        pred = ctx.dataset.get_evaluation_info(key).config.pred_field
        view = ctx.dataset.load_evaluation_view(key)
        missed = F(f"{key}_missed").contains(cls)
        wrong = F(f"{pred}.classifications").filter((F("label") == cls) & (F(key) == "fp")).length() > 0
        ctx.ops.set_view(view.match(missed | wrong))

    def render(self, ctx):
        from fiftyone_ram.evaluation.tables import PR_LAYOUT

        panel = types.Object()
        keys = _tag_eval_keys(ctx.dataset)
        if not keys:
            panel.md("No tag evaluation yet: run **Evaluate tags** from the operator browser.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical", padding=2))
        key = ctx.panel.state.eval_key if ctx.panel.state.eval_key in keys else keys[-1]
        top = panel.h_stack("top", gap=1, align_y="center")
        top.enum("eval_key", list(reversed(keys)), default=key, label="Evaluation (latest first)",
                 view=types.DropdownView(), on_change=self.on_change_key)
        top.btn("tune", label="Tune thresholds", on_click=self.tune, variant="outlined")
        panel.md(ctx.panel.state.summary or "", name="summary")
        tabs = types.TabsView()
        for value, label in EVALUATION_TABS.items():
            tabs.add_choice(value, label=label)
        tab = ctx.panel.state.tab or "classes"
        panel.enum("tab", list(EVALUATION_TABS), default=tab, view=tabs, on_change=self.on_change_tab)
        if tab == "classes":
            table = _table()
            for column, label in CLASS_COLUMNS:
                table.add_column(column, label=label)
            table.add_row_action("errors", self.show_errors, label="Errors", icon="filter_list",
                                 tooltip="Show the samples where this class is missed or wrongly predicted")
            panel.list("classes", types.Object(), label="Per class (P, R at the thresholds; most positives first)",
                       view=table)
        elif tab == "curves":
            results = ctx.dataset.load_evaluation_results(key)
            panel.enum("pr_class", results.classes.tolist(), default=ctx.panel.state.pr_class,
                       label="PR curve of (empty: the three best)", view=types.AutocompleteView(),
                       on_change=self.on_change_class)
            chosen = ctx.panel.state.pr_class
            panel.plot(_pr_key(chosen if chosen in results.classes.tolist() else None), layout=PR_LAYOUT,
                       config={"displayModeBar": False, "responsive": True})
        elif tab == "compare":
            panel.list("compare_keys", types.String(), default=ctx.panel.state.compare_keys or [],
                       label="Runs to compare (e.g. a comparison's <name>_<model>_eval)",
                       view=types.AutocompleteView(multiple=True, allow_user_input=False, allow_duplicates=False,
                                                   choices=[types.Choice(k, label=k) for k in reversed(keys)]),
                       on_change=self.on_change_compare)
            side = _table()
            for column, label in COMPARE_COLUMNS:
                side.add_column(column, label=label)
            panel.list("comparison", types.Object(), label="Side by side", view=side)
            panel.plot("comparison_pr", layout={**PR_LAYOUT, "yaxis": {"title": {"text": "Precision (mean over "
                                                                                     "classes)"},
                                                                       "range": [0, 1.02]}},
                       config={"displayModeBar": False, "responsive": True})
        else:
            confusion = _table()
            for column, label in (("missed", "Missed tag"), ("predicted_instead", "Wrong tags instead"),
                                  ("images", "Images")):
                confusion.add_column(column, label=label)
            panel.list("confusions", types.Object(), label="Missed tag × wrong tags on the same image",
                       view=confusion)
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=2, gap=2))


class TagReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(name="tag_review_panel", label="Tag review", icon="fact_check", surfaces="grid",
                               help_markdown="Review what `clean_tags` flagged: keep or remove, apply, undo")

    def on_load(self, ctx):
        self._load(ctx)

    def on_change_field(self, ctx):
        ctx.panel.state.tag_field = ctx.params.get("value")
        self._load(ctx)

    def _field(self, ctx) -> tuple[str | None, str | None]:
        from fiftyone_ram.engine.review_marks import review_fields

        fields = review_fields(ctx.dataset)
        name = ctx.panel.state.tag_field
        if name not in fields:
            name = next(iter(fields), None)
            ctx.panel.state.tag_field = name
        return name, fields.get(name)

    def _load(self, ctx):
        from fiftyone_ram.engine.review_marks import flagged_rows, review_counts

        name, review = self._field(ctx)
        if review is None:
            return
        counts = review_counts(ctx.dataset, review)
        ctx.panel.state.status = (f"**{counts['flagged']}** tags flagged in `{review}`: **{counts['keep']}** "
                                  f"marked keep, **{counts['remove']}** marked remove. Apply removes every "
                                  f"flagged tag not marked keep, and those marked remove.")
        ctx.panel.data.flags = flagged_rows(ctx.dataset, review)

    def show(self, ctx):
        """Only the flagged tags, and only the review field in the sidebar."""
        from fiftyone_ram.engine.review import flagged_view

        _, review = self._field(ctx)
        ctx.ops.set_view(flagged_view(ctx.dataset, review))
        ctx.ops.set_active_fields([review])

    def _mark(self, ctx, value):
        from fiftyone_ram.engine.review_marks import mark

        from fiftyone_ram.engine.review_marks import flagged_rows

        _, review = self._field(ctx)
        rows = flagged_rows(ctx.dataset, review)  # the table's rows, in the order shown (the App sends the index)
        index = ctx.params.get("row")
        if isinstance(index, int) and 0 <= index < len(rows):
            mark(ctx.dataset, review, [rows[index]["label_id"]], value)
        self._load(ctx)

    def keep(self, ctx):
        self._mark(ctx, "keep")

    def remove(self, ctx):
        self._mark(ctx, "remove")

    def apply(self, ctx):
        self._step(ctx, "apply")

    def undo(self, ctx):
        self._step(ctx, "undo")

    def _step(self, ctx, action: str) -> None:
        """Apply or undo through the review job; a refusal (the field was rewritten since, nothing to undo)
        is its one line in a notification, and nothing changes."""
        from fiftyone_ram.app.execution import one_line
        from fiftyone_ram.engine.review import ReviewJob
        from fiftyone_ram.errors import UserError

        name, _ = self._field(ctx)
        try:
            result = ReviewJob(tag_field=name, action=action).run(ctx.dataset)
        except UserError as exc:
            ctx.ops.notify(one_line(exc), variant="warning")
            return
        if action == "apply":
            message = f"Removed {result['removed']} tags from '{name}' (undo puts them back)"
        else:
            message = result.get("message") or f"Restored '{name}' as it was before apply"
        ctx.ops.notify(message, variant="success")
        ctx.ops.reload_dataset()
        self._load(ctx)

    def render(self, ctx):
        from fiftyone_ram.engine.review_marks import review_fields

        panel = types.Object()
        fields = review_fields(ctx.dataset)
        if not fields:
            panel.md("Nothing to review: run **Clean tags** first.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical", padding=2))
        panel.enum("tag_field", list(fields), default=ctx.panel.state.tag_field or next(iter(fields)),
                   label="Tags under review", view=types.DropdownView(), on_change=self.on_change_field)
        panel.md(ctx.panel.state.status or "", name="status")
        buttons = panel.h_stack("buttons", gap=1)  # short labels: all three fit a panel split three ways
        buttons.btn("show", label="Show flagged", on_click=self.show, variant="outlined")
        buttons.btn("apply", label="Apply", on_click=self.apply, variant="contained")
        buttons.btn("undo", label="Undo", on_click=self.undo, variant="outlined")
        table = _table(max_inline_actions=2)  # both buttons on the row: one click each
        for column, label in (("file", "Image"), ("tag", "Tag"), ("reason", "Reason"), ("score", "Score"),
                              ("mark", "Mark")):
            table.add_column(column, label=label)
        table.add_row_action("keep", self.keep, label="Keep", icon="check", tooltip="The flag is wrong: keep it")
        table.add_row_action("remove", self.remove, label="Remove", icon="delete",
                             tooltip="Remove this tag when applying")
        panel.list("flags", types.Object(), label="Flagged tags", view=table)
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=2, gap=2))


def _pr_key(chosen: str | None) -> str:
    """The data key of the PR plot of ``chosen`` (None: the three best). A key per choice: the App merges a
    plot's new traces into its old ones by position, so one class's curve kept the other two of the plot
    before; a new key is a new plot."""
    import hashlib

    return "pr" if chosen is None else f"pr_{hashlib.sha1(chosen.encode()).hexdigest()[:10]}"


def _table(**options) -> types.TableView:
    """A table that narrows to its panel: the App's tables are at least 650 px wide unless told otherwise, wider
    than a panel split beside the grid."""
    return types.TableView(componentsProps={"table": {"sx": {"minWidth": 0}}}, **options)


def _tag_eval_keys(dataset) -> list[str]:
    from fiftyone_ram.evaluation.tables import tag_evaluation_keys

    return tag_evaluation_keys(dataset)


class SampleTagsPanel(foo.Panel):
    """The tags of the sample open in the modal, in a table with their confidences and thresholds: the App
    itself shows a label's confidence only in the sidebar filter and the JSON view."""

    @property
    def config(self):
        return foo.PanelConfig(name="sample_tags_panel", label="Sample tags", icon="sell", surfaces="modal",
                               help_markdown="The open sample's tags with their confidences")

    def on_load(self, ctx):
        self._load(ctx)

    def on_change_current_sample(self, ctx):
        self._load(ctx)

    def on_change_dataset(self, ctx):  # a run rewrote the tags (the operators reload the dataset)
        self._load(ctx)

    def on_change_field(self, ctx):
        ctx.panel.state.tag_field = ctx.params.get("value")
        self._load(ctx)

    def _fields(self, ctx) -> list[str]:
        from fiftyone_ram.app.field_choices import PREDICTION_TYPES, label_fields, with_confidences

        return with_confidences(ctx.dataset, label_fields(ctx.dataset, PREDICTION_TYPES))

    def _load(self, ctx):
        from fiftyone_ram.app.field_choices import sample_tag_rows

        fields = self._fields(ctx)
        name = ctx.panel.state.tag_field
        if name not in fields:
            name = fields[0] if fields else None
            ctx.panel.state.tag_field = name
        sample_id = ctx.current_sample
        rows = sample_tag_rows(ctx.dataset, sample_id, name) if name and sample_id else []
        ctx.panel.data.tags = rows
        ctx.panel.state.heading = (f"**{len(rows)}** tags in **{name}**, most confident first" if name
                                   else "No field with confidences yet: tag the dataset first.")

    def render(self, ctx):
        panel = types.Object()
        fields = self._fields(ctx)
        if fields:
            panel.enum("tag_field", fields, default=ctx.panel.state.tag_field or fields[0], label="Field",
                       view=types.DropdownView(), on_change=self.on_change_field)
        panel.md(ctx.panel.state.heading or "", name="heading")
        table = _table()
        for column, label in (("tag", "Tag"), ("confidence", "Confidence"), ("threshold", "Threshold"),
                              ("margin", "Confidence − threshold")):
            table.add_column(column, label=label)
        panel.list("tags", types.Object(), label="Tags", view=table)
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=2, gap=2))


class PipelinePanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(name="pipeline_panel", label="Pipeline", icon="autorenew", surfaces="grid",
                               help_markdown="The per-round report of `run_pipeline` / `fiftyone-ram pipeline run`")

    def on_load(self, ctx):
        self._load(ctx)

    def on_change_prefix(self, ctx):
        ctx.panel.state.prefix = ctx.params.get("value")
        self._load(ctx)

    def _prefix(self, ctx) -> str | None:
        prefixes = _pipelines(ctx.dataset)
        prefix = ctx.panel.state.prefix
        if prefix not in prefixes:
            prefix = prefixes[-1] if prefixes else None
            ctx.panel.state.prefix = prefix
        return prefix

    def _load(self, ctx):
        from fiftyone_ram.pipeline.report import COLUMNS, report, traces

        prefix = self._prefix(ctx)
        if prefix is None:
            return
        found = report(ctx.dataset, prefix)
        lines = [f"Pipeline **{prefix}**: **{found['status']}**"
                 + (f", at {found['current']}" if found["current"] and found["status"] != "completed" else "")
                 + (f"; round {found['published']} published in `{prefix}`" if found["published"] is not None
                    else "")]
        if found["error"]:
            lines.append(f"> {found['error']}")
        if found["figure"]:
            lines.append(f"Figure: `{found['figure']}`")
        ctx.panel.state.summary = "\n\n".join(lines)
        keys = [key for key, _ in COLUMNS]
        ctx.panel.data.rounds = [{key: _shown(row.get(key)) for key in keys} | {"round": _round(row)}
                                 for row in found["rows"]]
        ctx.panel.data.metrics = traces(found["rows"])

    def _show(self, ctx, removed: bool):
        from fiftyone import ViewField as F

        from fiftyone_ram.pipeline.provenance import ATTRIBUTE, event
        from fiftyone_ram.pipeline.report import report
        from fiftyone_ram.pipeline.spec import Names

        prefix, index = self._prefix(ctx), ctx.params.get("row")
        rows = report(ctx.dataset, prefix)["rows"] if prefix else []
        if not isinstance(index, int) or not 0 <= index < len(rows):
            return
        number = rows[index]["round"]
        names = Names(prefix, ".")
        if removed:
            field, wanted = names.review(number), F(ATTRIBUTE) == event(number, "removed")
        else:
            field, wanted = names.labels(number), F(ATTRIBUTE).starts_with(f"r{number}:")
        if ctx.dataset.get_field(field) is None:
            return
        ctx.ops.set_view(ctx.dataset.filter_labels(field, wanted))
        ctx.ops.set_active_fields([field])

    def show_added(self, ctx):
        self._show(ctx, removed=False)

    def show_removed(self, ctx):
        self._show(ctx, removed=True)

    def render(self, ctx):
        from fiftyone_ram.pipeline.report import COLUMNS

        panel = types.Object()
        prefixes = _pipelines(ctx.dataset)
        if not prefixes:
            panel.md("No pipeline yet: run **Run the RAM pipeline** from the operator browser, or "
                     "`fiftyone-ram pipeline run SPEC`.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical", padding=2))
        panel.enum("prefix", prefixes, default=ctx.panel.state.prefix or prefixes[-1], label="Pipeline",
                   view=types.DropdownView(), on_change=self.on_change_prefix)
        panel.md(ctx.panel.state.summary or "", name="summary")
        table = types.TableView(max_inline_actions=2)
        for key, label in COLUMNS:
            table.add_column(key, label=label)
        table.add_row_action("added", self.show_added, label="Added", icon="add_circle",
                             tooltip="Show the tags this round added (by their provenance)")
        table.add_row_action("removed", self.show_removed, label="Removed", icon="remove_circle",
                             tooltip="Show the tags this round's review removed")
        panel.list("rounds", types.Object(), label="Rounds", view=table)
        panel.plot("metrics", layout={"title": "Per round", "xaxis": {"title": "round", "dtick": 1},
                                      "yaxis": {"title": "score", "range": [0, 1.02]}, "height": 360},
                   config={"displayModeBar": False})
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=2, gap=2))


def _pipelines(dataset) -> list[str]:
    from fiftyone_ram.driver import runs

    return [record.target for record in runs.records(dataset, "pipeline")]


def _shown(value):
    return round(value, 3) if isinstance(value, float) else "-" if value is None else value


def _round(row) -> str:
    return f"{row['round']} (undone)" if row.get("undone") else str(row["round"])


def register(p) -> None:
    p.register(TagEvaluationPanel)
    p.register(TagReviewPanel)
    p.register(SampleTagsPanel)
    p.register(PipelinePanel)
