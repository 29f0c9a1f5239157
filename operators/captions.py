"""Operator ``parse_caption_tags``: a caption field (string or list of strings) to a ``Classifications`` field of
tags in RAM's label system (or a user's tag list), for evaluation ground truth or training targets."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

DEFAULT_LABEL_FIELD = "caption_tags"


class ParseCaptionTags(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="parse_caption_tags",
            label="Parse caption tags",
            description="Turn captions into tags of RAM's label system (synonyms merged, negations skipped)",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App show their progress and their failures
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        fields = _caption_fields(ctx.dataset) if ctx.dataset is not None else []
        if not fields:
            inputs.view("none", types.Warning(label="This dataset has no string or list-of-strings field"))
            return types.Property(inputs)
        choices = types.DropdownView()
        for name in fields:
            choices.add_choice(name, label=name)
        inputs.enum("caption_field", fields, required=True, label="Caption field", view=choices, default=fields[0])
        inputs.str(
            "label_field",
            default=DEFAULT_LABEL_FIELD,
            label="Tags field",
            description="Classifications field to write (replaced if it exists)",
        )
        inputs.str(
            "tag_list",
            required=False,
            label="Tag list",
            description="Path on the server to a tag list or saved label system; RAM's 4,585 tags if empty",
        )
        inputs.view_target(ctx)
        return types.Property(inputs, view=types.View(label="Parse caption tags"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution
        from fiftyone_ram.labels.dataset_captions import parse_caption_field

        def work(progress):
            count = parse_caption_field(ctx.target_view(), ctx.params["caption_field"],
                                        ctx.params.get("label_field") or DEFAULT_LABEL_FIELD,
                                        tag_list=ctx.params.get("tag_list") or None, progress=progress)
            return {"count": count}

        def show(result):
            yield ctx.trigger("reload_dataset")
            yield from execution.show_result(ctx, self, result)

        return execution.run(ctx, work, label="Parsing captions", show=show)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("count", label="Samples tagged")
        return types.Property(outputs)


def _caption_fields(dataset) -> list[str]:
    """Top-level string and list-of-strings fields, where captions live."""
    import fiftyone as fo

    names = []
    for name, field in dataset.get_field_schema().items():
        text = isinstance(field, fo.StringField)
        texts = isinstance(field, fo.ListField) and isinstance(field.field, fo.StringField)
        if (text or texts) and name not in ("filepath", "tags"):
            names.append(name)
    return names


def register(p):
    p.register(ParseCaptionTags)
