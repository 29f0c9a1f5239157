"""``export_onnx``: a tagger's tagging path as an ONNX file with a dynamic batch axis, its int8 variant, and
the files a runtime needs beside them (:mod:`fiftyone_ram.export.folder`).

The graph is traced by torch's exporter (``torch.onnx.export(dynamo=True)``, from ``torch.export``), checked
in onnxruntime against the tagger's own fp32 forward on the same pixels, and the measured agreement is written
into ``export.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fiftyone_ram.export.folder import MODEL_FILES, OUR_FILES, ExportError, ExportFolder, check_output
from fiftyone_ram.export.folder import read_export, write_sidecar
from fiftyone_ram.export.graph import INPUT_NAME, OUTPUT_NAMES, TaggingGraph, whole_head
from fiftyone_ram.images import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fiftyone_ram.images import ImageInput
    from fiftyone_ram.tagger import Tagger

#: Largest |Δprobability| between onnxruntime and the tagger's fp32 forward that the export accepts.
FP32_TOLERANCE = 1e-4
#: ONNX's protobuf limit is 2 GiB; above this many bytes of weights the tensors go to ``model.onnx.data``.
EXTERNAL_DATA_BYTES = 1_800_000_000
RESIZE_RULE = ("RGB (alpha dropped, no EXIF rotation), PIL bilinear (antialiased) resize to image_size x "
               "image_size without keeping the aspect ratio, /255, then (x - mean) / std per channel; NCHW float32")


def export_onnx(tagger: Tagger, path: str | Path, *, int8: bool = False,
                calibration: Sequence[ImageInput] | torch.Tensor | None = None, trace_batch: int = 2,
                opset: int | None = None, overwrite: bool = False) -> ExportFolder:
    """Export ``tagger`` (loaded at ``precision="fp32"``) into the folder ``path``; returns what was written.

    ``model.onnx`` maps ``pixel_values`` (B, 3, S, S) to ``logits`` (B, C) over the tagger's tags and
    ``embedding`` (B, D), B dynamic (traced at ``trace_batch``). ``int8`` adds ``model.int8.onnx``, onnxruntime's
    static quantisation calibrated on ``calibration`` (images or a preprocessed batch; needed for int8: use a
    few images like the ones to tag). The agreement of each file with the tagger is measured on the calibration
    images (else on seeded random pixels) and recorded in ``export.json``. An existing non-empty folder is
    replaced only with ``overwrite``.
    """
    import torch

    try:
        import onnxscript  # noqa: F401  torch's exporter writes the graph with it
    except ImportError:
        raise ExportError("exporting to ONNX needs onnxscript and onnxruntime: pip install onnxscript onnxruntime") from None
    if tagger.precision != "fp32":
        raise ExportError(f"export from an fp32 tagger (load_tagger(..., precision='fp32')), not {tagger.precision}: "
                          "the int8 variant is made from the fp32 graph (int8=True)")
    if int8 and calibration is None:
        raise ExportError("an int8 export needs calibration images (calibration=...; CLI: --calibration)")
    folder = _prepare_folder(Path(path), overwrite)
    pixels = _sample_pixels(tagger, calibration, trace_batch)
    graph = TaggingGraph(tagger.model).eval()
    model_file = folder / MODEL_FILES["fp32"]
    try:
        with torch.no_grad():
            reference = [t.cpu().numpy() for t in graph(pixels.to(tagger.device))]  # also fills the query cache
            with whole_head(tagger.model):
                program = torch.onnx.export(
                    graph, (pixels[:max(trace_batch, 1)].to(tagger.device),), dynamo=True, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), optimize=True, verbose=False,
                    dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1)}})
        weights = sum(p.numel() * p.element_size() for p in tagger.model.parameters())
        program.save(str(model_file), external_data=weights > EXTERNAL_DATA_BYTES)
    finally:
        tagger.model.clear_query_cache()  # entries made while tracing must not serve later batches
    agreement = {"fp32": _agreement(tagger, model_file, pixels.numpy(), reference)}
    if agreement["fp32"]["max_abs_probability"] > FP32_TOLERANCE:
        raise ExportError(f"the ONNX export of {folder} differs from the tagger by "
                          f"{agreement['fp32']['max_abs_probability']:.2g} in probability (> {FP32_TOLERANCE})")
    models = {"fp32": MODEL_FILES["fp32"]}
    quantized: dict[str, Any] = {}
    if int8:
        from fiftyone_ram.export.int8 import quantize_int8

        int8_file = folder / MODEL_FILES["int8"]
        batches = [pixels[i:i + trace_batch].numpy() for i in range(0, len(pixels), max(trace_batch, 1))]
        quantized = quantize_int8(model_file, int8_file, batches, input_name=INPUT_NAME)
        agreement["int8"] = _agreement(tagger, int8_file, pixels.numpy(), reference)
        models["int8"] = MODEL_FILES["int8"]
    write_sidecar(folder, _manifest(tagger, models, agreement, quantized, program), tagger.tag_list,
                  tagger.thresholds, _chinese_names(tagger))
    return read_export(folder)


def _prepare_folder(folder: Path, overwrite: bool) -> Path:
    """The output folder, created and emptied of an earlier export (see :func:`check_output`)."""
    check_output(folder, overwrite)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in OUR_FILES:
            (folder / name).unlink(missing_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return folder


def _sample_pixels(tagger: Tagger, calibration, trace_batch: int) -> torch.Tensor:
    """The pixels the export is traced on and checked with: the calibration images, else seeded noise."""
    import torch

    if calibration is None:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(max(trace_batch, 1), 3, tagger.image_size, tagger.image_size, generator=generator)
    if isinstance(calibration, torch.Tensor):
        pixels = calibration.float().cpu()
    else:
        images = [calibration] if isinstance(calibration, (str, Path)) else list(calibration)
        if not images:
            raise ExportError("no calibration images given")
        pixels = tagger.preprocess(images)
    if len(pixels) < trace_batch:  # the trace needs trace_batch rows; repeat the few given
        pixels = pixels.repeat((trace_batch + len(pixels) - 1) // len(pixels), 1, 1, 1)
    return pixels


def _agreement(tagger: Tagger, model_file: Path, pixels: np.ndarray, reference: list[np.ndarray]) -> dict:
    """onnxruntime's outputs for ``pixels`` against the tagger's fp32 ones (logits, probabilities, tag sets)."""
    from fiftyone_ram.evaluation.agreement import agreement
    from fiftyone_ram.export.runtime import open_session, run_session, sigmoid

    logits, embedding = run_session(open_session(model_file), pixels)
    want = sigmoid(reference[0])
    got = sigmoid(logits)
    tags = agreement(want, got, tagger.thresholds)
    return {"images": int(len(pixels)), "max_abs_logit": float(np.abs(logits - reference[0]).max()),
            "max_abs_probability": float(np.abs(got.astype(np.float64) - want).max()),
            "max_abs_embedding": float(np.abs(embedding - reference[1]).max()), "tag_f1": tags.tag_f1}


def _chinese_names(tagger: Tagger) -> list[str] | None:
    try:
        return tagger.tag_list_chinese
    except Exception:  # a Chinese list that cannot be fetched offline is left out, not an export failure
        return None


def _manifest(tagger: Tagger, models: dict[str, str], agreement: dict, quantized: dict, program) -> dict:
    import onnxruntime
    import torch

    import fiftyone_ram

    opset = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "family": tagger.family,
        "num_tags": len(tagger.tag_list),
        "embedding_dim": tagger.embedding_dim,
        "preprocessing": {"image_size": tagger.image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "resize": "bilinear", "keep_aspect": False, "rule": RESIZE_RULE},
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, tagger.image_size, tagger.image_size],
                  "dtype": "float32"},
        "outputs": {OUTPUT_NAMES[0]: ["batch", len(tagger.tag_list)], OUTPUT_NAMES[1]: ["batch", tagger.embedding_dim]},
        "decision": "probability = sigmoid(logit); a tag is predicted when its probability is strictly above its "
                    "threshold (thresholds.txt, one per line of tag_list.txt), never when it is excluded",
        "excluded": np.flatnonzero(tagger.excluded).tolist(),
        "checkpoint": tagger.checkpoint.to_dict() if tagger.checkpoint is not None else None,
        "opset": opset,
        "agreement": agreement,
        "int8": {"method": "onnxruntime static QDQ: int8 weights per channel, uint8 activations per tensor, "
                           "MinMax calibration", **quantized} if quantized else None,
        "versions": {"fiftyone_ram": fiftyone_ram.__version__, "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "files": {"models": models},
    }
