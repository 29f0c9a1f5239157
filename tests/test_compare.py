"""``fiftyone-ram compare``: RAM, RAM++ and Tag2Text beside CLIP, SigLIP, BLIP and Grounding-DINO (and a field of
predictions) on a 20-image view built from upstream's OpenImages-common annotation lines, with tiny random models
(transformers configs, saved with ``save_pretrained``; nothing is downloaded).

Checked: the printed table and the figure; each model's mAP in the table equals ``evaluate_tags`` on its stored
scores; mAP, CP, CR, OP and OR again from the stored scores and the ground truth with scikit-learn; a second run
scores nothing again; other settings are refused in one line; an offline model that is not there is one line.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

import fiftyone as fo

from fiftyone_ram.cli import main

ANNOTATIONS = "openimages_common_214_ram_annots.txt"
TAGLIST = "openimages_common_214_ram_taglist.txt"
IMAGES = 20
KINDS = ("ram_plus", "ram", "tag2text", "clip", "siglip", "blip", "grounding_dino")
#: Three prompt templates of our own (upstream's 63 are downloaded at run time; tests download nothing).
TEMPLATES = "a photo of {article} {}.\nitap of my {}.\nThere is the {} in the scene.\n"


# -- tiny comparators, written to disk -------------------------------------------------------------------------


def _spread(model, seed: int):
    """Random weights far from transformers' near-zero initialisation, so that tiny towers tell images apart
    (BLIP's class token otherwise barely moves between images, and equal scores would tie in AP)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


@pytest.fixture(scope="module")
def tiny_comparators(tmp_path_factory, tiny_clip_text_dir, tiny_grounding_dino):
    """Folders of a tiny CLIP, SigLIP, BLIP (retrieval) and Grounding-DINO with their processors."""
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor,
                              BlipTextConfig, BlipVisionConfig, CLIPConfig, CLIPImageProcessor, CLIPModel,
                              CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig, GroundingDinoConfig,
                              GroundingDinoForObjectDetection, GroundingDinoProcessor, SiglipConfig,
                              SiglipImageProcessor, SiglipModel, SiglipTextConfig, SiglipVisionConfig)

    root = tmp_path_factory.mktemp("comparators")
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_clip_text_dir(0)))
    words = len(tokenizer)
    text = {"vocab_size": words, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    folders = {}

    def save(name, model, processor, words_of=tokenizer):
        folders[name] = root / name
        model.save_pretrained(folders[name])
        processor.save_pretrained(folders[name])
        words_of.save_pretrained(folders[name])

    torch.manual_seed(0)
    save("clip", _spread(CLIPModel(CLIPConfig(
        text_config=CLIPTextConfig(max_position_embeddings=77, projection_dim=16, **text),
        vision_config=CLIPVisionConfig(projection_dim=16, **vision), projection_dim=16)), 1),
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    save("siglip", _spread(SiglipModel(SiglipConfig(
        text_config=SiglipTextConfig(max_position_embeddings=64, projection_size=32, **text),
        vision_config=SiglipVisionConfig(**vision))), 2), SiglipImageProcessor(size={"height": 32, "width": 32}))
    (root / "bert").mkdir()
    (root / "bert" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a",
                                                        "photo", "of", "the", "car", "flower", "dog"]) + "\n")
    bert = BertTokenizerFast(str(root / "bert" / "vocab.txt"))
    save("blip", _spread(BlipForImageTextRetrieval(BlipConfig(
        text_config=BlipTextConfig(vocab_size=len(bert), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, max_position_embeddings=64, encoder_hidden_size=32,
                                   bos_token_id=2, sep_token_id=3, pad_token_id=0),
        vision_config=BlipVisionConfig(**vision), image_text_hidden_size=16)), 3),
        BlipImageProcessor(size={"height": 32, "width": 32}), bert)
    # conftest's detector, with the released models' text length (256 tokens: the 214 classes in 3 prompts).
    config = GroundingDinoConfig.from_pretrained(tiny_grounding_dino)
    config.max_text_len = config.text_config.max_position_embeddings = 256
    processor = GroundingDinoProcessor.from_pretrained(tiny_grounding_dino)
    detector = GroundingDinoForObjectDetection(config)
    with torch.no_grad():  # token logits near 1 rather than 15: float32 scores then do not all round to 1.0
        detector.model.decoder.layer_norm.weight.mul_(0.1)
        detector.model.decoder.layer_norm.bias.mul_(0.1)
    save("grounding_dino", detector, processor, processor.tokenizer)
    return folders


# -- the 20-image view -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def annotated_images(tmp_path_factory, upstream_dir, parity_dir):
    """Upstream's first 20 OpenImages-common annotation lines and an image file for each (a fixture photo,
    resized and noised), in the layout ``fiftyone-ram benchmark`` reads: ``<dir>/<image id>.jpg``."""
    from PIL import Image

    root = tmp_path_factory.mktemp("oi-common-20")
    lines = (upstream_dir / ANNOTATIONS).read_text().splitlines()[:IMAGES]
    (root / "annots.txt").write_text("\n".join(lines) + "\n")
    (root / "images").mkdir()
    photos = sorted(parity_dir.glob("*.png"))
    rng = np.random.default_rng(0)
    for i, line in enumerate(lines):
        width = 64 + 8 * (i % 4)
        pixels = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB").resize((width, 64)), dtype=float)
        pixels += rng.normal(0, 25, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "images" / f"{line.split(',')[0][5:]}.jpg")
    (root / "templates.txt").write_text(TEMPLATES)
    return root


def _models(parity_dir, upstream_dir, folders) -> list[str]:
    ours = {"ram_plus": "ram_tag_list.txt", "ram": "ram_tag_list.txt", "tag2text": "tag2text_ori_tag_list.txt"}
    models = []
    for family, tag_list in ours.items():
        text = (f"{family},checkpoint={parity_dir / f'{family}_tiny.pth'},config={parity_dir / 'fixtures_tiny.json'},"
                f"tag_list={upstream_dir / tag_list}")
        if family != "tag2text":
            text += f",thresholds={upstream_dir / 'ram_tag_list_threshold.txt'}"
        models.append(text)
    return models + [f"{kind}={folders[kind]}" for kind in KINDS[3:]]


def _args(annotated_images, upstream_dir, models, dataset_name, *extra):
    args = ["compare", "--benchmark", "openimages-common", "--annots", str(annotated_images / "annots.txt"),
            "--taglist", str(upstream_dir / TAGLIST), "--images-dir", str(annotated_images / "images"),
            "--dataset-name", dataset_name, "--templates", str(annotated_images / "templates.txt")]
    for model in models:
        args += ["--model", model]
    return args + list(extra)


@pytest.fixture(scope="module")
def compared(annotated_images, tiny_comparators, parity_dir, upstream_dir, tmp_path_factory):
    """The comparison run once by the command line (all seven models and a field of predictions); yields the
    dataset, the output, the figure path and the command's arguments. The dataset is deleted afterwards."""
    name = "fiftyone-ram-compare-test"
    models = _models(parity_dir, upstream_dir, tiny_comparators)
    figure = tmp_path_factory.mktemp("figure") / "compare.png"
    # A field of predictions the user already has (the ground truth, one class dropped): built on the benchmark
    # dataset before the comparison, which reads it as it is.
    from fiftyone_ram.evaluation.benchmarks import build_dataset

    dataset = build_dataset("openimages-common", annots=annotated_images / "annots.txt",
                            taglist=upstream_dir / TAGLIST, images_dir=annotated_images / "images",
                            dataset_name=name)
    rng = np.random.default_rng(1)
    dataset.set_values("mine", [fo.Classifications(classifications=[
        fo.Classification(label=c.label, confidence=float(rng.uniform(0.5, 1.0)))
        for c in gt.classifications if c.label != "car"]) for gt in dataset.values("ground_truth")])
    args = _args(annotated_images, upstream_dir, [*models, "field=mine"], name, "--figure", str(figure))
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    yield {"dataset": dataset, "output": result.output, "exit_code": result.exit_code, "figure": figure,
           "args": args, "models": models}
    dataset.delete()


def _table(output: str) -> dict[str, list[str]]:
    """The printed table's rows by model name."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_compare_prints_the_table_and_writes_the_figure(compared):
    print(compared["output"])  # shown with -s, and on a failure
    assert compared["exit_code"] == 0, compared["output"]
    table = _table(compared["output"])
    assert list(table) == [*KINDS, "mine"]
    head = [line for line in compared["output"].splitlines() if line.startswith("model ")][0].split()
    assert head[:9] == ["model", "mAP", "CP", "CR", "CF1", "OP", "OR", "img/s", "peak"]
    assert "paper" in head  # the view is the benchmark's: the papers' figures are beside
    for kind in KINDS:
        assert all(re.fullmatch(r"\d+\.\d", cell) for cell in table[kind][:6]), table[kind]
        assert float(table[kind][6]) > 0  # images per second
    papers = {"ram_plus": "86.6", "ram": "86.5", "tag2text": "83.4", "clip": "73.6", "blip": "75.7"}
    for kind, published in papers.items():
        assert table[kind][8] == published
    assert table["siglip"][8] == table["grounding_dino"][8] == table["mine"][8] == "-"
    assert "tag2text: 3 classes it cannot score" in compared["output"]
    figure = compared["figure"]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    html = figure.with_suffix(".html").read_text()
    assert all(kind in html for kind in KINDS)


@pytest.mark.slow
def test_each_models_map_is_evaluate_tags_on_its_stored_scores(compared):
    from fiftyone_ram.evaluation import evaluate_tags

    dataset = compared["dataset"]
    table = _table(compared["output"])
    for kind in (*KINDS, "mine"):
        stored = dataset.load_evaluation_results(f"cmp_{kind}_eval")
        field = stored.config.pred_field
        again = evaluate_tags(dataset, field, "ground_truth", model_tags=stored.model_tags,
                              classes=stored.classes.tolist(), ties=stored.config.ties)
        assert again.mAP() == stored.mAP()
        assert table[kind][0] == f"{100 * again.mAP():.1f}"
        assert field == ("mine" if kind == "mine" else f"cmp_{kind}")


@pytest.mark.slow
def test_figures_agree_with_scikit_learn_on_the_stored_scores(compared):
    """mAP, CP, CR, OP and OR from the stored logits, the recorded thresholds and the ground truth."""
    from sklearn.metrics import average_precision_score, precision_score, recall_score

    dataset = compared["dataset"]
    truth = [{c.label for c in gt.classifications} for gt in dataset.values("ground_truth")]
    for kind in KINDS:
        results = dataset.load_evaluation_results(f"cmp_{kind}_eval")
        tags = results.model_tags
        logits = np.stack(dataset.values(f"cmp_{kind}.logits"))
        assert logits.shape == (IMAGES, len(tags))
        scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
        target = np.array([[t in row for t in tags] for row in truth])
        with_positives = target.any(axis=0)
        ap = [average_precision_score(target[:, k], scores[:, k]) for k in np.flatnonzero(with_positives)]
        assert results.summary["mAP"] == pytest.approx(np.mean(ap), abs=1e-6)
        thresholds = np.asarray(results.per_class["threshold"], dtype=np.float32)
        assert results.classes.tolist() == tags
        predicted = scores.astype(np.float32) > thresholds
        columns = np.flatnonzero(with_positives)
        cp = np.mean([precision_score(target[:, k], predicted[:, k], zero_division=0) for k in columns])
        cr = np.mean([recall_score(target[:, k], predicted[:, k], zero_division=0) for k in columns])
        assert results.summary["CP"] == pytest.approx(cp, abs=1e-9)
        assert results.summary["CR"] == pytest.approx(cr, abs=1e-9)
        assert results.summary["OP"] == pytest.approx(precision_score(target.ravel(), predicted.ravel()), abs=1e-9)
        assert results.summary["OR"] == pytest.approx(recall_score(target.ravel(), predicted.ravel()), abs=1e-9)
        # The stored tags are the tuned thresholds' decisions.
        names = dataset.values(f"cmp_{kind}.classifications.label")
        assert [sorted(n) for n in names] == [sorted(np.asarray(tags)[row].tolist()) for row in predicted]


@pytest.mark.slow
def test_a_second_run_scores_nothing_again_and_other_settings_are_refused(compared, tmp_path, upstream_dir):
    from fiftyone_ram.evaluation.comparison import load_comparison

    dataset = compared["dataset"]
    before = {kind: dataset.values(f"cmp_{kind}.logits") for kind in KINDS}
    modified = dataset.values("last_modified_at")
    again = CliRunner().invoke(main, [*compared["args"], "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    import json

    report = json.loads(again.output)
    assert [m["model"] for m in report["models"]] == [*KINDS, "mine"]
    assert not any(m["scored_now"] for m in report["models"])
    assert dataset.values("last_modified_at") == modified  # nothing written to the samples
    for kind in KINDS:
        assert all(np.array_equal(a, b) for a, b in zip(before[kind], dataset.values(f"cmp_{kind}.logits")))
    record = load_comparison(dataset, "cmp")
    assert record["record"].status == "completed"
    assert set(record["models"]) == {*KINDS, "mine"}
    clip = record["models"]["clip"]
    assert clip["images"] == IMAGES and clip["images_per_second"] > 0 and clip["thresholds"]["rule"] == "per-class"

    classes = tmp_path / "classes.txt"
    classes.write_text("car\nflower\n")
    refused = CliRunner().invoke(main, [*compared["args"], "--classes", str(classes)])
    assert refused.exit_code == 2
    line = refused.output.strip().splitlines()[-1]
    assert line.startswith("Error: 'ram_plus' was scored in 'cmp_ram_plus' with other settings (classes: 214 "
                           "classes then, 2 classes now (--classes))")
    assert "--rerun" in line and dataset.values("last_modified_at") == modified


def test_the_choices_and_the_job_refuse_bad_values_in_one_line():
    from fiftyone_ram.comparators import parse_choice
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.evaluation import CompareJob

    choice = parse_choice("ram,checkpoint=/m/ram.pth,name=mine")
    assert (choice.kind, choice.source, choice.name, choice.option("checkpoint")) == ("ram", None, "mine",
                                                                                       "/m/ram.pth")
    assert parse_choice("RAM-plus=ram_plus_swin_large_14m").kind == "ram_plus"
    assert parse_choice("field=preds").name == "preds"
    for make, words in ((lambda: parse_choice("owlvit"), "unknown kind 'owlvit'"),
                        (lambda: parse_choice("clip,midpoint"), "is not KEY=VALUE"),
                        (lambda: parse_choice("siglip,midpoint=0.2"), "siglip takes no option 'midpoint'"),
                        (lambda: parse_choice("field"), "name the field"),
                        (lambda: CompareJob(models=("clip", "clip=other/clip")), "two models are named 'clip'"),
                        (lambda: CompareJob(name="my comparison"), "must be letters"),
                        (lambda: CompareJob(max_samples=5), "give --benchmark too")):
        with pytest.raises(UserError) as info:
            make()
        assert words in str(info.value) and "\n" not in str(info.value)


def test_one_threshold_for_all_classes_maximises_cf1():
    from fiftyone_ram.evaluation.thresholds import tune_global_threshold

    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4]], dtype=np.float32)
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=bool)
    best = tune_global_threshold(scores, targets)
    assert 0.4 <= best["threshold"] < 0.6 and best["CF1"] == pytest.approx(1.0)


@pytest.mark.slow
def test_offline_a_missing_model_is_one_line_and_nothing_is_written(tmp_path, parity_pngs):
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=str(p), ground_truth=fo.Classifications(
        classifications=[fo.Classification(label="dog")])) for p in parity_pngs[:2]])
    try:
        # offline (HF_HUB_OFFLINE, as the suite runs): run by click here, the exit status and the one line as a
        # user sees them (the installed command's own process: tests/test_cli_tag.py)
        result = CliRunner().invoke(main, ["compare", "--dataset", dataset.name, "--model",
                                           "clip=someone/missing-clip", "--name", "offline"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and "the CLIP model 'someone/missing-clip' is not available" in lines[0]
        dataset.reload()
        assert dataset.get_field("offline_clip") is None and "offline_clip_eval" not in dataset.list_evaluations()
    finally:
        dataset.delete()


@pytest.mark.slow
def test_a_validation_split_one_threshold_and_detections_from_python(compared, tiny_comparators, annotated_images):
    """``compare()`` from Python on a dataset of one's own (the classes: its ground truth's names): thresholds tuned
    on the samples tagged ``val`` (one for all classes), evaluated on the others; a Detections field enters as
    image-level tags; the figure goes where asked."""
    from fiftyone_ram.evaluation import compare

    dataset = compared["dataset"].clone()
    dataset.info = {}  # not a benchmark any more
    dataset.save()
    view = dataset.sort_by("filepath")
    val_ids = view.values("id")[:8]
    dataset.select(val_ids).tag_samples("val")
    dataset.set_values("objects", [fo.Detections(detections=[
        fo.Detection(label=c.label, bounding_box=[0.1, 0.1, 0.5, 0.5], confidence=0.7) for c in gt.classifications])
        for gt in dataset.values("ground_truth")])
    try:
        result = compare(dataset, models=[f"clip={tiny_comparators['clip']}", "field=objects"], name="split",
                         val_tag="val", threshold_rule="one", templates=str(annotated_images / "templates.txt"),
                         figure=str(annotated_images / "split.png"))
        clip, objects = result.models
        names = {c.label for gt in dataset.values("ground_truth") for c in gt.classifications}
        assert result.classes == sorted(names) and result.benchmark is None
        assert clip.results.summary["num_samples"] == IMAGES - 8 == result.evaluated
        assert result.tuned_on == "the 8 images tagged 'val'"
        thresholds = set(np.asarray(clip.results.per_class["threshold"]).tolist())
        assert len(thresholds) == 1 and clip.entry["thresholds"]["rule"] == "one"
        assert objects.field == "split_objects" and dataset.get_field("split_objects") is not None
        assert objects.results.summary["mAP"] == pytest.approx(1.0)  # the objects are the ground truth
        assert result.figure == annotated_images / "split.png" and result.figure.is_file()
        assert "paper" not in result.table()
    finally:
        dataset.delete()


@pytest.mark.slow
def test_the_operator_schedules_the_comparison_and_the_panel_shows_runs_side_by_side(compared, tiny_comparators,
                                                                                     annotated_images):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    from fiftyone_ram.evaluation import tables

    dataset = compared["dataset"]
    uri = "@fiftyone-ram/ram/compare_taggers"
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "view": dataset.view()._serialize(),
                                           "params": {}})
    form = foo.get_operator(uri).resolve_input(ctx).type.properties
    assert form["models"].default == list(KINDS) and form["gt_field"].default == "ground_truth"
    assert {"name", "threshold_rule", "val_tag", "templates", "rerun"} <= set(form)
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "view": dataset.view()._serialize(),
                                           "params": {"models": ["owlvit"]}})
    assert foo.get_operator(uri).resolve_input(ctx).type.properties["models"].invalid
    params = {"models": [f"clip={tiny_comparators['clip']}"], "gt_field": "ground_truth", "name": "app",
              "templates": str(annotated_images / "templates.txt"), "open_panel": False}
    run = foo.execute_operator(uri, ctx={"dataset": dataset, "params": params})
    assert run.error is None, run.error_message
    (row,) = run.result["models"]
    assert row["model"] == "clip" and 0 <= row["mAP"] <= 100 and run.result["eval_keys"] == ["app_clip_eval"]
    # What the panel shows for several runs: their figures side by side, their mean PR curves overlaid.
    runs = {k: dataset.load_evaluation_results(k) for k in ("app_clip_eval", "cmp_ram_eval")}
    rows = tables.comparison_rows(runs)
    assert [r["run"] for r in rows] == list(runs) and rows[1]["pred_field"] == "cmp_ram"
    assert rows[1]["mAP"] == round(runs["cmp_ram_eval"].mAP(), 4)
    traces = tables.comparison_traces(runs)
    assert len(traces) == 2 and len(traces[0]["x"]) == 101 and traces[0]["name"].startswith("app_clip_eval")
