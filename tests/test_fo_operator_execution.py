"""``tag_images`` as the App runs it: scheduled only where the App can schedule, large views kept out of the
App server, the custom-checkpoint form with the fewest inputs, Tag2Text captions in a field the App shows."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")
foo = pytest.importorskip("fiftyone.operators")

URI = "@fiftyone-ram/ram/tag_images"


@pytest.fixture()
def dataset(tmp_path, copy_pngs):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in copy_pngs(tmp_path / "images")])
    yield ds
    ds.delete()


def _ctx(samples, **params):
    from fiftyone.operators.executor import ExecutionContext

    return ExecutionContext(request_params={"dataset_name": samples._root_dataset.name,
                                            "view": samples.view()._serialize(), "params": params})


def _form(dataset, **params):
    return foo.get_operator(URI).resolve_input(_ctx(dataset, **params)).type.properties


@pytest.mark.parametrize("legacy", [False, True])
def test_scheduling_is_the_default_only_where_the_app_can_schedule(dataset, monkeypatch, legacy):
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", legacy)
    options = foo.get_operator(URI).resolve_execution_options(_ctx(dataset, model="custom"))
    assert options.allow_immediate_execution and options.allow_delegated_execution
    assert options.default_choice_to_delegated is legacy
    assert options.to_dict()["orchestrator_registration_enabled"] is not legacy  # what the App's menu reads
    notice = _form(dataset, model="custom").get("execution_notice")
    if legacy:
        assert notice is None
    else:  # says it runs now, and how to run it in the background
        assert "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true" in notice.view.label


@pytest.mark.parametrize("legacy", [False, True])
def test_a_view_too_large_for_an_immediate_run_is_scheduled_or_refused(dataset, monkeypatch, legacy,
                                                                       tiny_model_settings):
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", legacy)
    monkeypatch.setenv("FIFTYONE_RAM_IMMEDIATE_LIMIT", "3")
    options = foo.get_operator(URI).resolve_execution_options(_ctx(dataset))
    assert options.allow_immediate_execution is not legacy and options.default_choice_to_delegated is legacy
    notice = _form(dataset, model="custom")["execution_notice"]
    if legacy:
        assert "scheduled" in notice.view.label
    else:  # nothing to schedule on: the form cannot be submitted, and says what to do instead
        assert "fiftyone-ram tag --dataset" in notice.view.description
        assert "fiftyone delegated launch" in notice.view.description
    settings = tiny_model_settings()
    params = {"model": "custom", "checkpoint_path": settings["checkpoint_path"], "tag_list": settings["tag_list"],
              "thresholds": settings["thresholds"], "device": "cpu", "label_field": "ram"}
    if legacy:  # FiftyOne queues it rather than running it
        from fiftyone.operators.delegated import DelegatedOperationService

        queued = foo.execute_operator(URI, ctx={"view": dataset.view(), "params": params})
        assert queued.delegated
        DelegatedOperationService().delete_operation(queued.result["id"])
    else:
        with pytest.raises(Exception, match="more than an immediate run can take"):
            foo.execute_operator(URI, ctx={"view": dataset.view(), "params": params})
    assert "ram" not in dataset.get_field_schema()
    assert foo.get_operator(URI).resolve_execution_options(_ctx(dataset.limit(3))).allow_immediate_execution


def test_the_custom_form_needs_only_the_checkpoint(dataset, parity_dir, tmp_path):
    empty = _form(dataset, model="custom")
    assert empty["checkpoint_path"].required and "family" in empty  # no file yet: nothing to read
    found = _form(dataset, model="custom", checkpoint_path=str(parity_dir / "ram_plus_tiny.pth"))
    assert "family" not in found and not found["config"].required and not found["tag_list"].required
    assert "RAM++ checkpoint" in found["checkpoint_found"].view.label and "incomplete" not in found
    assert "tag_list_chinese" not in found  # English: no Chinese list asked for
    chinese = _form(dataset, model="custom", checkpoint_path=str(parity_dir / "ram_plus_tiny.pth"), language="zh")
    assert not chinese["tag_list_chinese"].required  # upstream's, with upstream's tag list
    own = _form(dataset, model="custom", checkpoint_path=str(parity_dir / "ram_plus_tiny.pth"), language="zh",
                tag_list=str(tmp_path / "mine.txt"))
    assert own["tag_list_chinese"].required and "incomplete" in own  # your own list needs your own names
    missing = _form(dataset, model="custom", checkpoint_path=str(tmp_path / "nowhere.pth"))
    assert "does not exist" in missing["checkpoint_error"].view.description and "incomplete" in missing
    # Tag2Text whose captioner is not BERT's size, with no vocab.txt beside it: asked for, captions only
    (tmp_path / "alone").mkdir()
    alone = str(tmp_path / "alone" / "t2t.pth")
    (tmp_path / "alone" / "t2t.pth").write_bytes((parity_dir / "tag2text_tiny.pth").read_bytes())
    assert _form(dataset, model="custom", checkpoint_path=alone)["tokenizer"].required
    assert "tokenizer" not in _form(dataset, model="custom", checkpoint_path=alone, caption=False)
    assert "tokenizer" not in _form(dataset, model="custom", checkpoint_path=str(parity_dir / "tag2text_tiny.pth"))


def test_tag2text_captions_land_in_a_declared_field(dataset, parity_dir, upstream_dir, tiny_tag2text):
    params = {"model": "custom", "checkpoint_path": str(parity_dir / "tag2text_tiny.pth"),
              "tag_list": str(upstream_dir / "tag2text_ori_tag_list.txt"), "device": "cpu", "label_field": "t2t",
              "batch_size": 2}
    view = dataset.limit(2)
    result = foo.execute_operator(URI, ctx={"view": view, "params": params})
    assert result.result["tagged"] == 2
    assert isinstance(dataset.get_field("t2t_caption"), fo.StringField)
    assert view.values("t2t_caption") == view.values("t2t.caption") == tiny_tag2text.caption(view.values("filepath"))
