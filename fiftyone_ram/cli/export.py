"""``fiftyone-ram export --format onnx OUTPUT``: a tagger's tagging path as ONNX files with the tag list,
thresholds and preprocessing beside them (``fiftyone_ram.export``, docs/export.md).

The output folder is refused before the model is loaded when it exists and holds anything (without
``--overwrite``) or cannot be written.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fiftyone_ram.cli.options import CommandError, tagger_options
from fiftyone_ram.image_files import find_images

__all__ = ["export"]


@click.command("export")
@click.argument("output", type=click.Path(file_okay=False))
@tagger_options
@click.option("--format", "export_format", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="What to export to.")
@click.option("--int8", is_flag=True, help="Also write model.int8.onnx: onnxruntime static int8, calibrated on "
                                           "--calibration images.")
@click.option("--calibration", "calibration", multiple=True, type=click.Path(exists=True),
              help="Images or folders like the ones to tag: calibrate --int8 and measure the agreement "
                   "(repeatable; a few dozen images are plenty).")
@click.option("--trace-batch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Batch the graph is traced at (the exported batch axis is dynamic).")
@click.option("--opset", type=click.IntRange(min=18), default=None, help="ONNX opset (default: the exporter's).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in OUTPUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the export's manifest as JSON.")
def export(output, export_format, int8, calibration, trace_batch, opset, overwrite, as_json, **tagger):
    """Export a tagger to OUTPUT (a folder): model.onnx (pixels to logits and embeddings, dynamic batch), its
    int8 variant with --int8, export.json, tag_list.txt and thresholds.txt."""
    from fiftyone_ram.export.folder import ExportError

    precision = tagger.get("precision")
    if precision not in (None, "fp32"):
        raise CommandError(f"--precision {precision}: an export is traced from fp32 weights; add --int8 for the "
                           "int8 variant")
    folder = Path(output)
    _check_output(folder, overwrite)
    images = [found.path for found in find_images(calibration) if found.is_image] if calibration else []
    if int8 and not images:
        raise CommandError("--int8 needs --calibration images (a few dozen like the ones to tag)")
    from fiftyone_ram.export.onnx import export_onnx  # torch and the exporter: only once nothing was refused

    try:
        result = export_onnx(_load(tagger), folder, int8=int8, calibration=images or None, trace_batch=trace_batch,
                             opset=opset, overwrite=overwrite)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.manifest))
        return
    for variant, name in result.models.items():
        figures = result.manifest["agreement"][variant]
        size = (result.path / name).stat().st_size + _data_size(result.path / name)
        click.echo(f"{result.path / name}  ({size / 1e6:.1f} MB; {variant}: max |Δprobability| "
                   f"{figures['max_abs_probability']:.2g}, tag-set F1 {figures['tag_f1']:.4f} on "
                   f"{figures['images']} image(s))")


def _load(options: dict):
    """The fp32 tagger the shared tagger options describe, on the CPU unless ``--device`` says otherwise."""
    from fiftyone_ram.cli.options import load_tagger_from

    return load_tagger_from(options, device=options.get("device") or "cpu", precision="fp32")


def _check_output(folder: Path, overwrite: bool) -> None:
    """What can be refused before the model is loaded: a file in the way, a non-empty folder, no write access."""
    from fiftyone_ram.export.folder import ExportError, check_output

    try:
        check_output(folder, overwrite)
    except ExportError as exc:
        raise CommandError(str(exc)) from None


def _data_size(model: Path) -> int:
    data = model.with_name(model.name + ".data")
    return data.stat().st_size if data.is_file() else 0
