"""Custom vocabularies inside FiftyOne (real database): the ``tag_images`` operator with a typed list, a tags
file and RAM++ descriptions; ``apply_model`` with the zoo hook's ``load_model`` keywords; the App form."""

from __future__ import annotations

import json

import pytest

fo = pytest.importorskip("fiftyone")
foo = pytest.importorskip("fiftyone.operators")

URI = "@fiftyone-ram/ram/tag_images"


@pytest.fixture()
def dataset(parity_pngs):
    """Three images; each test writes its own fields, so each gets its own dataset."""
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in parity_pngs[:3]])
    yield ds
    ds.delete()


@pytest.fixture()
def stored(stored_tags):
    """``stored(view, field)``: the field's tags as ``Tagger.predict`` rows."""
    return lambda view, field: [stored_tags(label) for label in view.values(field)]


def test_operator_tags_with_a_typed_list_a_file_and_descriptions(dataset, tmp_path, tiny_model_settings, tiny_tagger,
                                                                 tiny_clip_text_dir, stored, assert_same_tags,
                                                                 path_tolerance):
    (tmp_path / "more_tags.txt").write_text("dog\nAnole\n")
    (tmp_path / "descriptions.json").write_text(json.dumps(
        [{"Zeppelin": ["a photo of a zeppelin.", "a rigid airship"]}, {"Anole": ["a small green lizard"]}]))
    settings = tiny_model_settings("ram_plus")
    params = {"model": "custom", "device": "cpu", "label_field": "custom_vocab", "batch_size": 2,
              **{k: settings[k] for k in ("family", "checkpoint_path", "config", "tag_list", "thresholds")},
              "tags": ["cat", "Zeppelin"], "tags_file": str(tmp_path / "more_tags.txt"),
              "descriptions": str(tmp_path / "descriptions.json"), "text_encoder": str(tiny_clip_text_dir()),
              "new_tag_threshold": 0.0}
    result = foo.execute_operator(URI, ctx={"view": dataset.view(), "params": params})
    assert result.error is None and result.result["tagged"] == 3
    dataset.reload()

    tagger = tiny_tagger("ram_plus", tags=["cat", "Zeppelin", "dog", "Anole"],
                         descriptions=tmp_path / "descriptions.json", text_encoder=tiny_clip_text_dir(),
                         new_tag_threshold=0.0)
    want = tagger.predict(dataset.values("filepath"))
    assert all({"Zeppelin", "Anole"} <= {name for name, _ in row} for row in want)  # threshold 0: always
    assert_same_tags(stored(dataset, "custom_vocab"), want, names=tagger.tag_list, thresholds=tagger.thresholds,
                     **path_tolerance(tagger.precision))  # the form's batches of 2, predict's of 4
    assert set(dataset.distinct("custom_vocab.classifications.label")) <= {"cat", "Zeppelin", "dog", "Anole"}


def test_apply_model_with_zoo_load_model_keywords(dataset, tmp_path, clip_templates, tiny_clip_text_dir,
                                                 tiny_model_settings, stored, assert_same_tags, path_tolerance):
    from fiftyone_ram.fiftyone.zoo import CUSTOM, load_model

    vocabulary = dict(tags=["cat", "Bagpipes", "dog", "yak-wool hat"], templates=list(clip_templates),
                      text_encoder=str(tiny_clip_text_dir()), tag_thresholds={"Bagpipes": 0.0, "dog": 0.0})
    model = load_model(CUSTOM, str(tmp_path / "unused"), **tiny_model_settings(device="cpu", **vocabulary))
    assert model.tagger.tag_list == vocabulary["tags"]
    dataset.apply_model(model, label_field="zoo_vocab", batch_size=2, num_workers=0)

    rows = stored(dataset, "zoo_vocab")
    assert all({"Bagpipes", "dog"} <= {name for name, _ in row} for row in rows)
    assert_same_tags(rows, model.tagger.predict(dataset.values("filepath")), names=model.tagger.tag_list,
                     thresholds=model.tagger.thresholds, **path_tolerance(model.tagger.precision))
    asked = model.config.vocabulary  # the zoo's flat keywords, kept as one vocabulary
    assert asked["tags"] == vocabulary["tags"] and asked["tag_thresholds"] == vocabulary["tag_thresholds"]


def test_form_offers_the_vocabulary_and_translates_it(dataset, tmp_path):
    from fiftyone.operators.executor import ExecutionContext

    from fiftyone_ram.app.forms import model_kwargs

    def fields(model):
        ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {"model": model}})
        return set(foo.get_operator(URI).resolve_input(ctx).type.properties)

    vocab = {"tags", "tags_file", "keep_builtin", "new_tag_threshold", "text_encoder"}
    assert vocab | {"descriptions"} <= fields("ram_plus_swin_large_14m")
    assert vocab <= fields("ram_swin_large_14m") and "descriptions" not in fields("ram_swin_large_14m")
    assert not (vocab | {"descriptions"}) & fields("tag2text_swin_14m")  # learned queries: subsets only

    (tmp_path / "tags.txt").write_text("owl\ncat\n")
    assert model_kwargs({"tags": ["cat", " Zeppelin "], "tags_file": str(tmp_path / "tags.txt"),
                         "keep_builtin": True, "new_tag_threshold": 0.4, "descriptions": ""})["vocabulary"] == {
        "tags": ["cat", "Zeppelin", "owl", "cat"], "keep_builtin": True, "new_tag_threshold": 0.4}
    assert model_kwargs({"tags": [], "tags_file": "on/the/worker.txt"})["vocabulary"] == {"tags": "on/the/worker.txt"}
    assert "vocabulary" not in model_kwargs({"tags": None, "keep_builtin": False, "new_tag_threshold": None})


def test_cli_tags_a_dataset_with_a_vocabulary(tmp_path, copy_pngs, tiny_cli_args, tiny_tagger, tiny_clip_text_dir,
                                              stored, assert_same_tags):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    paths = [str(p) for p in copy_pngs(tmp_path / "images")[3:]]
    (tmp_path / "tags.txt").write_text("dog\nZeppelin\ncat\n")
    (tmp_path / "descriptions.json").write_text(json.dumps([{"Zeppelin": ["a rigid airship"]}]))
    vocabulary = ["--tags", tmp_path / "tags.txt", "--descriptions", tmp_path / "descriptions.json",
                  "--text-encoder", tiny_clip_text_dir(), "--new-tag-threshold", "0"]
    args = ["tag", *paths, "--dataset", "vocab-cli", "--field", "mine", *tiny_cli_args("ram_plus"), "--device", "cpu",
            "--json", *vocabulary]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output

    dataset = fo.load_dataset("vocab-cli")
    tagger = tiny_tagger("ram_plus", tags=tmp_path / "tags.txt", descriptions=tmp_path / "descriptions.json",
                         text_encoder=tiny_clip_text_dir(), new_tag_threshold=0.0)
    want = tagger.predict(dataset.values("filepath"))
    assert all("Zeppelin" in [name for name, _ in row] for row in want)
    assert_same_tags(stored(dataset, "mine"), want, names=tagger.tag_list, thresholds=tagger.thresholds)
    dataset.delete()
