"""Static int8 of an exported network with onnxruntime's quantiser: which matrix products go int8, and the
calibration that fixes their activation scales.

Weights are int8 per output channel, activations uint8 per tensor with scales fixed by calibration (MinMax
over the calibration batches), in QDQ form so that onnxruntime fuses each pair into an integer matrix product
(VNNI where the CPU has it). Fixed scales make an image's scores independent of its batch companions, unlike
dynamic quantisation. Quantised: the Linear layers of the image encoder and the tagging head (where nearly all
the multiply-adds are). Kept fp32: the products of two activations (attention scores), the image projection,
RAM++'s per-image description mix, and the logit layer: their rounding reaches the scores directly.

Which ONNX node came from which module is read from the exporter's node metadata (``name_scopes`` and
``class_hierarchy``), so the choice follows module names as ``fiftyone_ram.models.precision`` does.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

#: Module names (without the graph's own prefix) whose Linear layers are quantised.
INT8_MODULES = re.compile(r"visual_encoder\..*|tagging_head\..*")
#: What the export wraps the tagger's model in (``TaggingGraph.model``): stripped from the exporter's scopes.
GRAPH_PREFIX = "model."
_SCOPES = "pkg.torch.onnx.name_scopes"
_CLASSES = "pkg.torch.onnx.class_hierarchy"


def linear_nodes(model, pattern: re.Pattern[str] = INT8_MODULES) -> tuple[list[str], list[str]]:
    """The MatMul / Gemm nodes of ``model`` (an ``onnx.ModelProto``) to quantise, and the others."""
    chosen, kept = [], []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        meta = {p.key: p.value for p in node.metadata_props}
        scope, cls = _owning_module(meta.get(_SCOPES), meta.get(_CLASSES))
        name = scope[len(GRAPH_PREFIX):] if scope.startswith(GRAPH_PREFIX) else scope
        linear = cls in ("torch.nn.modules.linear.Linear", "torch.nn.modules.linear.NonDynamicallyQuantizableLinear")
        (chosen if linear and pattern.fullmatch(name) else kept).append(node.name)
    return chosen, kept


def _owning_module(scopes: str | None, classes: str | None) -> tuple[str, str]:
    """The innermost module (name, class) of a node: the exporter lists the modules from the outside in, then
    the operator itself (``aten.linear.default``), which is skipped."""
    try:
        pairs = list(zip(ast.literal_eval(scopes or "[]"), ast.literal_eval(classes or "[]")))
    except (ValueError, SyntaxError):
        return "", ""
    modules = [(str(s), str(c)) for s, c in pairs if not str(c).startswith(("aten.", "prims."))]
    return modules[-1] if modules else ("", "")


def quantize_int8(source: Path, target: Path, batches: Iterable[np.ndarray], *, input_name: str) -> dict:
    """Write the static int8 quantisation of ``source`` to ``target``, calibrated on ``batches`` of pixels;
    returns what was quantised (node counts)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source), load_external_data=False)
    chosen, kept = linear_nodes(model)
    del model

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{input_name: np.ascontiguousarray(b, np.float32)} for b in batches])

        def get_next(self):
            return next(self._feeds, None)

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=chosen,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    return {"quantized_matmuls": len(chosen), "fp32_matmuls": len(kept)}
