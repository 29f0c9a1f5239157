"""The OpenImages benchmark on a local stand-in: upstream's annotation files, a few local images named
after the first annotated Open Images ids, and the tiny parity RAM++ checkpoint as the tagger."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from fiftyone_ram.evaluation import benchmarks as B

N_IMAGES, N_LISTED = 10, 12  # the last two listed images have no file


@pytest.fixture(scope="module")
def standin(parity_dir, upstream_dir, tmp_path_factory):
    lines = (upstream_dir / "openimages_common_214_ram_annots.txt").read_text().splitlines()[:N_LISTED]
    root = tmp_path_factory.mktemp("openimages")
    (root / "test").mkdir()
    pngs = sorted(parity_dir.glob("*.png"))
    for i, line in enumerate(lines[:N_IMAGES]):
        image = Image.open(pngs[i % len(pngs)]).convert("RGB")
        if i >= len(pngs):  # a different picture, so that no two images score alike
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90, expand=True)
        image.save(root / f"{line.split(',')[0]}.jpg", quality=95)
    return root, lines


@pytest.fixture(scope="module")
def tagger(tiny_tagger):
    """Shared by the tests of this module: read it, never change it."""
    return tiny_tagger("ram_plus")


def _assert_counts(got, predicted, unsure, where) -> None:
    """Per class, ``got`` counts ``predicted & where``, with each ``unsure`` decision (one within the margin of
    its threshold, which another machine may take the other way) counted either way."""
    low, high = (predicted & ~unsure & where).sum(0), ((predicted | unsure) & where).sum(0)
    got = np.asarray(got)
    assert (low <= got).all() and (got <= high).all(), (got.tolist(), low.tolist(), high.tolist())


@pytest.fixture(scope="module")
def report(standin, tagger, upstream_dir):
    root, _ = standin
    return B.run_benchmark("openimages-common", tagger, images_dir=root, max_samples=N_LISTED,
                           taglist=upstream_dir / "openimages_common_214_ram_taglist.txt",
                           annots=upstream_dir / "openimages_common_214_ram_annots.txt",
                           dataset_name="standin-openimages-common", batch_size=4)


def test_benchmark_numbers_equal_a_direct_computation(report, standin, tagger, upstream_dir, assert_scores_close,
                                                      near_threshold):
    root, lines = standin
    classes = (upstream_dir / "openimages_common_214_ram_taglist.txt").read_text().split("\n")
    classes = [c for c in classes if c]
    present = lines[:N_IMAGES]
    targets = np.array([[c in line.split(",")[1:] for c in classes] for line in present])
    probs = tagger.probabilities([str(root / f"{line.split(',')[0]}.jpg") for line in present], tags=classes)

    assert (report.images, report.missing_images) == (N_IMAGES, N_LISTED - N_IMAGES)
    results = report.results
    assert results.classes.tolist() == classes and results.summary["num_samples"] == N_IMAGES
    with_pos = np.flatnonzero(targets.any(0))
    assert results.summary["num_classes_with_positives"] == len(with_pos)
    ap = np.asarray(results.per_class["ap"])
    assert_scores_close(ap[with_pos], average_precision_score(targets[:, with_pos], probs[:, with_pos], average=None))
    assert results.summary["mAP"] == pytest.approx(ap[with_pos].mean())
    thresholds = tagger.thresholds[tagger.class_indices(classes)]
    predicted = probs >= thresholds  # upstream batch_inference.py: >=
    unsure = near_threshold(probs, thresholds)
    _assert_counts(results.per_class["tp"], predicted, unsure, targets)
    _assert_counts(results.per_class["fp"], predicted, unsure, ~targets)
    tp, fp = np.asarray(results.per_class["tp"]), np.asarray(results.per_class["fp"])
    cp = np.mean((tp / np.maximum(tp + fp, 1))[with_pos])
    assert results.summary["CP"] == pytest.approx(cp)
    assert "86.6" in B.format_benchmark(report)  # the RAM++ paper's figure is printed beside ours


def test_cli_prints_ours_beside_the_paper(report, standin, tagger, upstream_dir, monkeypatch):
    from click.testing import CliRunner

    from fiftyone_ram.cli import evaluate as evaluate_cli
    from fiftyone_ram.cli import main

    stored_only = copy.copy(tagger)  # the stored scores are re-used: no model run (the shared tagger is left as is)
    stored_only.iter_batches = None
    monkeypatch.setattr(evaluate_cli, "load_tagger_from", lambda *args, **kwargs: stored_only)
    root, _ = standin
    args = ["benchmark", "openimages-common", "--model", "ram_plus", "--images-dir", str(root),
            "--max-samples", str(N_LISTED), "--taglist", str(upstream_dir / "openimages_common_214_ram_taglist.txt"),
            "--annots", str(upstream_dir / "openimages_common_214_ram_annots.txt"),
            "--dataset-name", "standin-openimages-common", "--reuse-scores"]
    out = CliRunner().invoke(main, args + ["--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["ours"]["mAP"] == pytest.approx(report.results.summary["mAP"])
    assert printed["ours"]["CP"] == pytest.approx(report.results.summary["CP"])
    assert printed["paper"]["mAP"] == pytest.approx(0.866) and printed["missing_images"] == N_LISTED - N_IMAGES
    text = CliRunner().invoke(main, args + ["--threshold", "0.5"])  # re-decided at one threshold
    assert text.exit_code == 0, text.output
    assert f"{100 * report.results.summary['mAP']:.1f}" in text.output and "thresholds 0.5" in text.output


def test_tuned_thresholds_load_into_the_tagger_and_reproduce_their_figures(report, tagger, tiny_tagger, tmp_path):
    tuning = report.results.tune_thresholds(base_thresholds=tagger)
    assert len(tuning.thresholds) == len(tagger.tag_list) and tuning.tuned()
    path = tuning.write(tmp_path / "tuned_thresholds.txt")
    tuned = tiny_tagger("ram_plus", thresholds=path)
    np.testing.assert_array_equal(tuned.thresholds, tuning.thresholds)
    # the tagger's own (strict >) decision on the benchmark's scores gives the tuned recall per class
    dataset = report.results.samples
    classes = report.results.classes.tolist()
    logits = np.stack(dataset.values(f"{report.results.config.pred_field}.logits"))
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    idx = tuned.class_indices(classes)
    decided = tuned.decide(probs, idx)
    truth = dataset.values("ground_truth.classifications.label")
    for row in tuning.tuned():
        hits = sum(row["tag"] in dict(d) and row["tag"] in t for d, t in zip(decided, truth))
        assert hits == round(row["recall"] * row["support"])


def test_open_set_benchmark_embeds_the_rare_tags(tagger, parity_dir, upstream_dir, tmp_path, tiny_clip_text_dir,
                                                 assert_scores_close, near_threshold):
    """openimages-rare's 200 tags are not RAM's: RAM++ embeds them from LLM descriptions with a CLIP text
    encoder (the vocabulary tests' tiny random CLIP here, so nothing is downloaded)."""
    from fiftyone_ram.vocabulary import build_vocabulary

    lines = (upstream_dir / "openimages_rare_200_ram_annots.txt").read_text().splitlines()[:6]
    (tmp_path / "test").mkdir()
    for line, png in zip(lines, sorted(parity_dir.glob("*.png")) * 2):
        Image.open(png).convert("RGB").rotate(len(line) % 4 * 90).save(tmp_path / f"{line.split(',')[0]}.jpg")
    files = dict(taglist=upstream_dir / "openimages_rare_200_ram_taglist.txt",
                 annots=upstream_dir / "openimages_rare_200_ram_annots.txt", images_dir=tmp_path, max_samples=6)
    # upstream's descriptions, 3 of the 51 per tag to keep the embedding short
    upstream = json.loads((upstream_dir / "openimages_rare_200_llm_tag_descriptions.json").read_text())
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps([{tag: texts[:3]} for item in upstream for tag, texts in item.items()]))
    with pytest.raises(ValueError, match="text encoder"):  # offline, the default CLIP cannot be fetched
        B.run_benchmark("openimages-rare", tagger, descriptions=descriptions, dataset_name="standin-rare", **files)
    report = B.run_benchmark("openimages-rare", tagger, descriptions=descriptions, text_encoder=tiny_clip_text_dir(),
                             dataset_name="standin-rare", **files)

    classes = [c for c in files["taglist"].read_text().split("\n") if c]
    open_set = tagger.with_vocabulary(build_vocabulary(tagger, tags=classes, descriptions=descriptions,
                                                       text_encoder=tiny_clip_text_dir()))
    probs = open_set.probabilities([str(tmp_path / f"{line.split(',')[0]}.jpg") for line in lines], tags=classes)
    targets = np.array([[c in line.split(",")[1:] for c in classes] for line in lines])
    with_pos = np.flatnonzero(targets.any(0))
    # The run scored the images as the open-set tagger does (to float32 accuracy across batch shapes) ...
    import fiftyone as fo

    stored = np.asarray(fo.load_dataset("standin-rare").values("ram_plus.logits"), dtype=np.float64)
    scored = 1.0 / (1.0 + np.exp(-stored))
    assert_scores_close(scored, probs)
    # ... and its AP is scikit-learn's on the scores it stored (tiny random CLIP scores nearly tie, so AP is
    # taken on the run's own scores: a 1e-6 difference may swap two ranks)
    ap = np.asarray(report.results.per_class["ap"])[with_pos]
    assert_scores_close(ap, average_precision_score(targets[:, with_pos], scored[:, with_pos], average=None))
    predicted = probs >= 0.5  # upstream's open-set threshold
    _assert_counts(report.results.per_class["tp"], predicted, near_threshold(probs, 0.5), targets)
    assert "75.4" in B.format_benchmark(report)  # RAM++'s published OI-rare mAP
