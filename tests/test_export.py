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
def exports(tmp_path_factory, tiny_tagger, tiny_cli_args, upstream_dir, parity_pngs):
    """``exports(family)``: (tagger, export folder) for a tiny checkpoint, exported once per module. RAM's is
    written by ``fiftyone-ram export`` (run by click in this process: its output is ``exports.output``) with
    its int8 variant, calibrated on the parity images; the others by ``export_onnx``."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main
    from fiftyone_ram.export import export_onnx, read_export

    made: dict = {}

    def get(family: str):
        if family not in made:
            tagger = tiny_tagger(family, precision="fp32")
            folder = tmp_path_factory.mktemp(f"export-{family}") / "onnx"
            if family == "ram":
                done = CliRunner().invoke(main, [
                    "export", str(folder), "--format", "onnx", *tiny_cli_args("ram"), "--tag-list-chinese",
                    str(upstream_dir / "ram_tag_list_chinese.txt"), "--int8",
                    *(f"--calibration={p}" for p in parity_pngs)], catch_exceptions=False)
                assert done.exit_code == 0, done.output
                get.output = done.stdout
                result = read_export(folder)
            else:
                result = export_onnx(tagger, folder, trace_batch=2)
            made[family] = tagger, result
        return made[family]

    return get


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _refused(*args, one_line: bool = True) -> str:
    """``fiftyone-ram export`` run by click: exit status 2 and (``one_line``) one ``Error:`` line; its stderr."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, ["export", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert not one_line or len(result.stderr.strip().splitlines()) == 1, result.output
    return result.stderr


@pytest.mark.slow
def test_export_command(exports, tiny_cli_args, tmp_path):
    """The export ``exports`` made by the command (its files are checked above), and the outputs it refuses
    before the model is loaded: the installed command in a process of its own once (exit status 2, one line),
    the others through click."""
    _, export = exports("ram")
    assert "model.onnx" in exports.output and "model.int8.onnx" in exports.output
    assert "max |Δprobability|" in exports.output
    assert {p.name for p in export.path.iterdir()} >= {"model.onnx", "export.json", "tag_list.txt", "thresholds.txt"}

    again = _cli("export", export.path, *tiny_cli_args("ram"))  # refused before the model is loaded
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "exists and is not empty" in again.stderr and "--overwrite" in again.stderr

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is a file" in _refused(a_file, *tiny_cli_args("ram"), one_line=False)  # click's own check: usage too
    assert "--calibration" in _refused(tmp_path / "int8", "--int8", *tiny_cli_args("ram"))
    assert "fp32" in _refused(tmp_path / "bf16", "--precision", "bf16", *tiny_cli_args("ram"))
    assert not (tmp_path / "int8").exists() and not (tmp_path / "bf16").exists()
