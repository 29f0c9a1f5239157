"""``finetune`` and ``fiftyone-ram finetune`` end to end on the tiny parity checkpoint: a real dataset of shape
images, a few real optimizer steps, and the model folder they write loaded back through ``load_tagger``, the
FiftyOne model, the CLI's ``tag`` and ``--checkpoint FOLDER``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

fo = pytest.importorskip("fiftyone")

TEMPLATES = ["a photo of {article} {}.", "itap of my {}."]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_dataset):
    dataset, tag_file = shapes_dataset(tmp_path_factory.mktemp("shapes"), train=8, validation=6)
    yield dataset, tag_file
    dataset.delete()


def _model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file, family: str = "ram") -> dict:
    lists = ({"tag_list": upstream_dir / "tag2text_ori_tag_list.txt"} if family == "tag2text" else
             {"tag_list": upstream_dir / "ram_tag_list.txt", "thresholds": upstream_dir / "ram_tag_list_threshold.txt"})
    return dict(model=parity_dir / "fixtures_tiny.json", checkpoint=parity_dir / f"{family}_tiny.pth", family=family,
                tags=str(tag_file), text_encoder=str(tiny_clip_text_dir(0)), templates=TEMPLATES, **lists)


def test_finetune_writes_a_folder_that_loads_with_the_same_tags(shapes, tmp_path, parity_dir, upstream_dir,
                                                              tiny_clip_text_dir, parity_pngs, assert_same_tags,
                                                              one_thread):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.model_folder import read_model_folder
    from fiftyone_ram.training import finetune

    dataset, tag_file = shapes
    before = torch.load(parity_dir / "ram_tiny.pth", map_location="cpu", weights_only=True)["model"]
    out = tmp_path / "model"
    model = _model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file)
    result = finetune(dataset.match_tags("train"), out, **model, tag_field="gt", teacher=None, device="cpu",
                      progress=False, messages=lambda _: None, epochs=1, batch_size=4, lr=1e-5, rand_augment=False)
    assert result.steps == 2 and result.epochs == 1 and result.best is None
    folder = read_model_folder(out)
    assert folder.thresholds is not None
    saved = torch.load(folder.checkpoint, map_location="cpu", weights_only=True)
    assert set(saved) == {"model"}
    # the upstream layout: the same key names as the released checkpoint (new label queries, 4 rows)
    assert set(saved["model"]) <= set(before) | {"label_embed"}
    assert saved["model"]["label_embed"].shape[0] == 4
    changed = [k for k in saved["model"] if k in before and saved["model"][k].shape == before[k].shape
               and not torch.equal(saved["model"][k], before[k])]
    assert any(k.startswith("visual_encoder.") for k in changed) and any(k.startswith("tagging_head.") for k in changed)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["type"] == "start" and log[-1]["type"] == "end"
    assert any(r["type"] == "step" and "tag" in r["losses"] and r["images_per_s"] > 0 for r in log)
    assert not (out / "resume").exists()

    loaded = load_tagger(out, device="cpu", precision="fp32")  # as trained: the weights must round-trip exactly
    assert loaded.tag_list == result.tagger.tag_list == ["circle", "square", "triangle", "zigzag"]
    np.testing.assert_array_equal(loaded.thresholds, result.tagger.thresholds)
    images = [str(p) for p in parity_pngs]
    probabilities = result.tagger.predict(images, threshold=0.0)
    assert_same_tags(loaded.predict(images, threshold=0.0), probabilities, thresholds=0.0)
    also = load_tagger("ram", out, device="cpu", precision="fp32")  # the folder given as the checkpoint
    assert_same_tags(also.predict(images, threshold=0.0), probabilities, thresholds=0.0)


def test_finetune_through_the_cli_and_tag_with_the_folder(shapes, tmp_path, tiny_cli_args, tiny_clip_text_dir,
                                                       parity_pngs, stored_tags, assert_same_tags, one_thread):
    from click.testing import CliRunner

    from fiftyone_ram import load_tagger
    from fiftyone_ram.cli import main
    from fiftyone_ram.fiftyone import load_model

    dataset, tag_file = shapes
    out = tmp_path / "cli-model"
    templates = tmp_path / "templates.txt"
    templates.write_text("\n".join(TEMPLATES) + "\n")
    args = ["finetune", dataset.name, "--output", str(out), *tiny_cli_args("ram"), "--tags", str(tag_file),
            "--text-encoder", str(tiny_clip_text_dir(0)), "--templates", str(templates),
            "--train-tag", "train", "--validation-tag", "validation", "--tag-field", "gt", "--no-teacher",
            "--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--device", "cpu", "--json"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["steps"] == 1 and summary["best_epoch"] == 0
    assert [h["epoch"] for h in summary["history"]] == [-1, 0]
    info = json.loads((out / "finetune.json").read_text())
    assert info["finished"] and info["best_epoch"] == 0
    assert not [f for f in dataset.get_field_schema() if f.startswith("finetune_val")]  # temporary fields gone

    tagger = load_tagger(out, device="cpu")
    images = [str(p) for p in parity_pngs]
    expected = tagger.predict(images)
    printed = CliRunner().invoke(main, ["tag", *map(str, images), "--checkpoint", str(out), "--device", "cpu",
                                        "--json"], catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    rows = [json.loads(line) for line in printed.output.splitlines() if line.startswith("{")]
    got = [[(t["tag"], t["probability"]) for t in row["tags"]] for row in rows]
    assert_same_tags(got, expected, names=tagger.tag_list, thresholds=tagger.thresholds)

    model = load_model(checkpoint_path=str(out), device="cpu")
    tagged = fo.Dataset()
    tagged.add_samples([fo.Sample(filepath=p) for p in images])
    try:
        tagged.apply_model(model, label_field="ram", batch_size=5, num_workers=0)
        assert_same_tags([stored_tags(label) for label in tagged.values("ram")], expected,
                         names=tagger.tag_list, thresholds=tagger.thresholds)
    finally:
        tagged.delete()


def test_a_non_empty_output_is_never_replaced_unasked(shapes, tmp_path, parity_dir, upstream_dir,
                                                     tiny_clip_text_dir):
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.training import finetune

    dataset, tag_file = shapes
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me\n")
    with pytest.raises(UserError, match="not empty"):
        finetune(dataset, out, **_model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file), tag_field="gt",
                 teacher=None, device="cpu", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        finetune(dataset, out, **_model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file), tag_field="gt",
                 teacher=None, device="cpu", progress=False, resume_run=True)
    with pytest.raises(UserError, match="gamma|must be|unknown"):
        finetune(dataset, out, **_model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file), tag_field="gt",
                 teacher=None, device="cpu", progress=False, overwrite=True, epochs=0)
    assert (out / "mine.txt").read_text() == "keep me\n"


def test_unmapped_tags_are_reported_and_a_missing_teacher_switches_distillation_off(
        shapes, tmp_path, parity_dir, upstream_dir, tiny_clip_text_dir, one_thread):
    from fiftyone_ram.training import finetune

    dataset, _ = shapes
    two = tmp_path / "two.txt"
    two.write_text("circle\nsquare\n")
    notes: list[str] = []
    result = finetune(dataset.match_tags("validation"), tmp_path / "out",
                      **_model(parity_dir, upstream_dir, tiny_clip_text_dir, two), tag_field="gt",
                      teacher=str(tmp_path / "no-clip-here"), device="cpu", progress=False, messages=notes.append,
                      epochs=1, batch_size=6, max_steps=1)
    assert result.steps == 1
    assert any("not in the model's vocabulary" in n and "'triangle'" in n and "'zigzag'" in n for n in notes)
    assert any("distillation is off" in n for n in notes)
    assert set(result.report["unmapped"]) == {"triangle", "zigzag"}


@pytest.mark.parametrize("family", ["tag2text", "ram_plus"])
def test_captions_and_other_families_train_and_load(family, shapes, tmp_path, parity_dir, upstream_dir,
                                                    tiny_clip_text_dir, parity_pngs, one_thread):
    """Tag2Text from captions only (parsed into tags, the caption loss on); RAM++ from tags and captions."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.training import finetune

    dataset, tag_file = shapes
    view = dataset.match_tags("validation")
    view.set_values("caption", [" and ".join(f"a {c.label}" for c in label.classifications)
                                for label in view.values("gt")])
    options = _model(parity_dir, upstream_dir, tiny_clip_text_dir, tag_file, family)
    if family == "tag2text":
        options = {k: v for k, v in options.items() if k not in ("tags", "text_encoder", "templates")}
    targets = {"caption_field": "caption"} if family == "tag2text" else {"tag_field": "gt", "caption_field": "caption"}
    result = finetune(view, tmp_path / family, **options, **targets, teacher=None, device="cpu", progress=False,
                      messages=lambda _: None, epochs=1, batch_size=3, max_steps=1)
    losses = [json.loads(line) for line in (tmp_path / family / "log.jsonl").read_text().splitlines()
              if '"step"' in line][0]["losses"]
    assert set(losses) == ({"caption", "tag"} if family == "tag2text" else {"tag"})
    assert result.report["positives"] > 0
    loaded = load_tagger(tmp_path / family, device="cpu")
    assert loaded.family == family and loaded.tag_list == result.tagger.tag_list
    assert len(loaded.predict([str(parity_pngs[0])])) == 1
