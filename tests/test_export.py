"""ONNX export: the exported graph in onnxruntime agrees with the tagger at any batch size, the files beside it
say everything a runtime needs, the int8 variant stays within its measured bound, the FiftyOne model that runs
an export stores what RamModel stores, and ``fiftyone-ram export`` refuses a bad output in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

#: onnxruntime against the tagger's fp32 forward (measured on the tiny checkpoints: 2e-6 to 1.2e-5 in
#: probability; the acceptance bound is 1e-4).
FP32_ATOL = 1e-4
#: The int8 export of the tiny RAM calibrated on the five parity images, against fp32 on the same images.
#: Measured: max |Δprobability| 0.06, tag-set F1 0.97 (random weights: ~300 tags per image, many of them
#: close to their threshold).
INT8_MAX_DELTA = 0.15
INT8_MIN_F1 = 0.9


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_tagger, parity_pngs):
    """``exports(family)``: (tagger, export folder) for a tiny checkpoint, exported once per module; RAM's
    with its int8 variant, calibrated on the parity images."""
    from fiftyone_ram.export import export_onnx

    made: dict = {}

    def get(family: str):
        if family not in made:
            tagger = tiny_tagger(family, precision="fp32")
            folder = tmp_path_factory.mktemp(f"export-{family}")
            int8 = family == "ram"
            result = export_onnx(tagger, folder, trace_batch=2, int8=int8,
                                 calibration=[str(p) for p in parity_pngs] if int8 else None)
            made[family] = tagger, result
        return made[family]

    return get


@pytest.mark.parametrize("family", ["ram", "ram_plus", "tag2text"])
def test_export_agrees_with_the_tagger_at_other_batch_sizes(exports, parity_pngs, family):
    from fiftyone_ram.export.runtime import open_session, run_session, sigmoid

    tagger, export = exports(family)
    session = open_session(export.model_path("fp32"))
    pixels = tagger.preprocess([str(p) for p in parity_pngs[:4]])
    (reference,) = tagger.iter_batches(pixels)
    for rows in (slice(0, 1), slice(1, 4)):  # traced at batch 2, run at 1 and 3
        logits, embedding = run_session(session, pixels[rows].numpy())
        assert logits.shape == (rows.stop - rows.start, len(tagger.tag_list))
        np.testing.assert_allclose(sigmoid(logits), reference.probabilities[rows], rtol=0, atol=FP32_ATOL)
        np.testing.assert_allclose(embedding, reference.embeddings[rows], rtol=0, atol=FP32_ATOL)
    assert export.manifest["agreement"]["fp32"]["max_abs_probability"] <= FP32_ATOL


@pytest.mark.parametrize("family", ["ram", "tag2text"])
def test_the_files_beside_the_model(exports, family):
    from fiftyone_ram.export import read_export

    tagger, export = exports(family)
    folder = export.path
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["family"] == family and manifest["num_tags"] == len(tagger.tag_list)
    assert manifest["preprocessing"]["image_size"] == 224
    assert manifest["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["preprocessing"]["std"] == [0.229, 0.224, 0.225]
    assert manifest["input"] == {"name": "pixel_values", "shape": ["batch", 3, 224, 224], "dtype": "float32"}
    assert (folder / "tag_list.txt").read_text().splitlines() == tagger.tag_list
    thresholds = [float(x) for x in (folder / "thresholds.txt").read_text().splitlines()]
    np.testing.assert_array_equal(np.asarray(thresholds, np.float32), tagger.thresholds)
    assert manifest["excluded"] == np.flatnonzero(tagger.excluded).tolist()
    if family == "ram":
        assert (folder / "tag_list_chinese.txt").read_text().splitlines() == tagger.tag_list_chinese
        assert set(manifest["files"]["models"]) == {"fp32", "int8"}
    else:  # Tag2Text: no Chinese names; upstream's excluded tags travel with the export
        assert not (folder / "tag_list_chinese.txt").exists() and manifest["excluded"]
    again = read_export(folder / "model.onnx")
    assert again.tag_list == tagger.tag_list and again.image_size == 224


def test_int8_export_stays_within_its_bound(exports, parity_pngs):
    from fiftyone_ram.evaluation.agreement import agreement
    from fiftyone_ram.export.runtime import open_session, run_session, sigmoid

    tagger, export = exports("ram")
    pixels = tagger.preprocess([str(p) for p in parity_pngs])
    (reference,) = tagger.iter_batches(pixels)
    session = open_session(export.model_path("int8"))
    single = np.concatenate([sigmoid(run_session(session, pixels[i:i + 1].numpy())[0]) for i in range(5)])
    batched = sigmoid(run_session(session, pixels.numpy())[0])
    result = agreement(reference.probabilities, batched, tagger.thresholds)
    assert 1e-4 < result.max_abs_delta <= INT8_MAX_DELTA and result.tag_f1 >= INT8_MIN_F1, result
    np.testing.assert_allclose(single, batched, rtol=0, atol=1e-4)  # static scales: no batch dependence
    recorded = export.manifest["agreement"]["int8"]
    assert recorded["max_abs_probability"] == pytest.approx(result.max_abs_delta, abs=1e-4)
    assert export.manifest["int8"]["quantized_matmuls"] > 0
    assert (export.path / "model.int8.onnx").stat().st_size < 0.6 * (export.path / "model.onnx").stat().st_size


def test_onnx_model_stores_the_labels_ram_model_stores(exports, parity_pngs, tiny_model_settings, stored_tags,
                                                       assert_same_tags):
    import fiftyone as fo

    import fiftyone_ram.fiftyone as forf
    from fiftyone_ram.fiftyone.onnx_model import load_onnx_model

    tagger, export = exports("ram")
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in parity_pngs])
    dataset.apply_model(forf.load_model(**tiny_model_settings("ram"), precision="fp32", device="cpu"),
                        label_field="torch", batch_size=2, num_workers=0)
    dataset.apply_model(load_onnx_model(export.path), label_field="onnx", batch_size=3, num_workers=0,
                        store_logits=True)
    torch_rows = [stored_tags(label) for label in dataset.values("torch")]
    onnx_rows = [stored_tags(label) for label in dataset.values("onnx")]
    assert all(onnx_rows)
    assert_same_tags(onnx_rows, torch_rows, thresholds=tagger.thresholds, names=tagger.tag_list,
                     atol=FP32_ATOL, margin=FP32_ATOL)
    first = dataset.first()
    assert first.onnx.classifications[0].threshold == first.torch.classifications[0].threshold
    assert len(first.onnx.logits) == len(tagger.tag_list)
    subset = load_onnx_model(export.path, classes=["dog", "cat"], confidence_thresh=0.0)
    labels = subset.predict_all([str(parity_pngs[1])])[0]
    assert sorted(c.label for c in labels.classifications) == ["cat", "dog"]


def test_an_export_needs_an_fp32_tagger_and_images_for_int8(tiny_tagger, tmp_path):
    from fiftyone_ram.export import ExportError, export_onnx

    with pytest.raises(ExportError, match="fp32"):
        export_onnx(tiny_tagger("ram", precision="bf16"), tmp_path / "out")
    with pytest.raises(ExportError, match="calibration"):
        export_onnx(tiny_tagger("ram", precision="fp32"), tmp_path / "out", int8=True)
    assert not (tmp_path / "out").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fiftyone_ram.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_export_command(tiny_cli_args, tmp_path):
    out = tmp_path / "ram-onnx"
    done = _cli("export", out, "--format", "onnx", *tiny_cli_args("ram"))
    assert done.returncode == 0, done.stderr
    assert "model.onnx" in done.stdout and "max |Δprobability|" in done.stdout
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "export.json", "tag_list.txt", "thresholds.txt"}

    again = _cli("export", out, *tiny_cli_args("ram"))  # refused before the model is loaded
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "exists and is not empty" in again.stderr and "--overwrite" in again.stderr

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    blocked = _cli("export", a_file, *tiny_cli_args("ram"))
    assert blocked.returncode == 2 and "is a file" in blocked.stderr

    no_images = _cli("export", tmp_path / "int8", "--int8", *tiny_cli_args("ram"))
    assert no_images.returncode == 2 and "--calibration" in no_images.stderr
    reduced = _cli("export", tmp_path / "bf16", "--precision", "bf16", *tiny_cli_args("ram"))
    assert reduced.returncode == 2 and "fp32" in reduced.stderr
