"""Reduced precision: what ``auto`` resolves to on each kind of machine (capabilities injected where torch reads
them), that bf16 / fp16 / int8 taggers really run reduced and still agree with fp32 on the tiny fixtures, and
that the CLI, the FiftyOne model and the forms pass the choice through."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fiftyone_ram import hardware
from fiftyone_ram.evaluation.agreement import agreement
from fiftyone_ram.hardware import Capabilities, PrecisionError, auto_precision, resolve_precision

CPU = torch.device("cpu")

AVX512_BF16 = Capabilities("cpu", cpu_capability="AVX512", cpu_bf16=True, int8_engine=True, cpu_vnni=True)
AVX512 = Capabilities("cpu", cpu_capability="AVX512", cpu_bf16=False, int8_engine=True)
AVX2 = Capabilities("cpu", cpu_capability="AVX2", cpu_bf16=True, int8_engine=True)  # AMX/bf16 unused by ATen here
AVX2_NO_ENGINE = Capabilities("cpu", cpu_capability="AVX2", int8_engine=False)
AVX512_BF16_NO_ENGINE = Capabilities("cpu", cpu_capability="AVX512", cpu_bf16=True, int8_engine=False)
ARM = Capabilities("cpu", cpu_capability="DEFAULT", int8_engine=True)


@pytest.mark.parametrize(("capabilities", "expected"), [
    (AVX512_BF16, "bf16"), (AVX512, "int8"), (AVX2, "int8"), (AVX2_NO_ENGINE, "fp32"),
    (AVX512_BF16_NO_ENGINE, "bf16"), (ARM, "fp32"),
    (Capabilities("cuda", cuda_capability=(9, 0)), "bf16"), (Capabilities("cuda", cuda_capability=(8, 0)), "bf16"),
    (Capabilities("cuda", cuda_capability=(7, 5)), "fp16"), (Capabilities("cuda", cuda_capability=(6, 1)), "fp16"),
    (Capabilities("mps"), "fp32"),
])
def test_auto_rule(capabilities, expected):
    assert auto_precision(capabilities) == expected


@pytest.mark.parametrize(("capabilities", "expected"),
                         [(AVX512_BF16_NO_ENGINE, "bf16"), (AVX2, "int8"), (ARM, "fp32")])
def test_load_tagger_auto_follows_detected_hardware(monkeypatch, tiny_tagger, capabilities, expected):
    from fiftyone_ram.models.precision import StaticInt8Linear

    monkeypatch.setattr(hardware, "detect_capabilities", lambda device: capabilities)
    tagger = tiny_tagger("ram", precision="auto")
    assert tagger.precision == expected
    block = tagger.model.visual_encoder.layers[0].blocks[0]
    linear = block.mlp.fc1
    if expected == "bf16":
        assert linear.weight.dtype == torch.bfloat16 and tagger.model.fc.weight.dtype == torch.float32
    elif expected == "int8":
        assert isinstance(linear, StaticInt8Linear) and linear.gelu and isinstance(block.mlp.act, torch.nn.Identity)
        assert isinstance(block.attn.qkv, StaticInt8Linear)
        assert isinstance(tagger.model.image_proj, torch.nn.Linear) and isinstance(tagger.model.fc, torch.nn.Linear)
    else:
        assert linear.weight.dtype == torch.float32


def test_environment_default_and_explicit_value(monkeypatch):
    monkeypatch.setattr(hardware, "detect_capabilities", lambda device: AVX2)
    monkeypatch.setenv(hardware.PRECISION_ENV, "auto")
    assert resolve_precision(None, CPU) == "int8"
    monkeypatch.setenv(hardware.PRECISION_ENV, "BF16")
    assert resolve_precision(None, CPU) == "bf16"
    assert resolve_precision("fp32", CPU) == "fp32"  # an explicit value wins over the environment
    monkeypatch.delenv(hardware.PRECISION_ENV)
    assert resolve_precision(None, CPU) == "int8"  # unset: auto


def test_bad_precision_is_one_line_before_anything_is_read(monkeypatch, tmp_path):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.errors import UserError

    with pytest.raises(PrecisionError, match="unknown precision 'fp8'; expected one of auto, fp32") as info:
        load_tagger("ram_swin_large_14m", tmp_path / "missing.pth", precision="fp8")
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    monkeypatch.setenv(hardware.PRECISION_ENV, "half")
    with pytest.raises(PrecisionError, match=r"\(from \$FIFTYONE_RAM_PRECISION\)"):
        resolve_precision(None, CPU)
    with pytest.raises(PrecisionError, match="int8 runs on the CPU only"):
        resolve_precision("int8", torch.device("cuda"))


def test_this_machine_is_detected(monkeypatch):
    """The real detection runs and agrees with what torch says of this CPU."""
    capabilities = hardware.detect_capabilities(CPU)
    assert capabilities.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert capabilities.int8_engine == ("onednn" in torch.backends.quantized.supported_engines)
    facts = hardware.describe("cpu")
    assert facts["auto_precision"] == auto_precision(capabilities) and facts["cores"] >= 1


#: Least tag-set F1 against fp32 on the tiny random-weight fixtures (224 px, 100-150 tags per image, many of them
#: near a threshold; measured 0.97-1.0 for bf16/fp16; static int8 0.93 (RAM++), 0.96 (RAM), 0.98 (Tag2Text)).
#: Real weights are more confident: the full-size figures are in docs/benchmarks.md.
MIN_F1 = {"bf16": 0.95, "fp16": 0.98, "int8": 0.9}
#: Largest |Δprobability| against fp32 on the tiny fixtures: measured bf16/fp16 up to 0.04, static int8 0.21
#: (RAM++), 0.08 (RAM), 0.03 (Tag2Text).
MAX_DELTA = {"bf16": 0.25, "fp16": 0.25, "int8": 0.3}


@pytest.mark.parametrize("family", ["ram", "ram_plus", "tag2text"])
@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=pytest.mark.slow), "int8"])  # fp16: GPUs'
def test_reduced_precision_agrees_with_fp32(tiny_tagger, parity_dir, family, precision):
    images = sorted(str(p) for p in parity_dir.glob("*.png"))
    reference, reduced = tiny_tagger(family, precision="fp32"), tiny_tagger(family, precision=precision)
    assert (reference.precision, reduced.precision) == ("fp32", precision)
    want = np.concatenate([b.probabilities for b in reference.iter_batches(images)])
    got = np.concatenate([b.probabilities for b in reduced.iter_batches(images)])
    result = agreement(want, got, reference.thresholds)
    assert result.tag_f1 >= MIN_F1[precision], result
    assert 1e-5 < result.max_abs_delta < MAX_DELTA[precision], result  # reduced for real, yet close
    embeds = np.concatenate([b.embeddings for b in reduced.iter_batches(images)])
    assert embeds.dtype == np.float32 and np.isfinite(embeds).all()


def test_reduced_tagger_keeps_precision_through_vocabulary_and_fiftyone(tiny_tagger, tiny_model_settings):
    import fiftyone_ram.fiftyone as forf

    tagger = tiny_tagger("ram", precision="int8", tags=["dog", "cat"])  # a vocabulary makes a new Tagger
    assert tagger.precision == "int8" and tagger.tag_list == ["dog", "cat"]
    model = forf.load_model(**tiny_model_settings("ram", precision="bf16"))
    assert model.tagger.precision == "bf16"
    assert forf.from_tagger(tagger).config.precision == "int8"  # a worker re-reading it runs the same


def test_agreement_figures():
    reference = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4]], np.float32)
    moved = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.6]], np.float32)
    result = agreement(reference, moved, np.array([0.5, 0.5, 0.5]))
    assert result.tag_f1 == pytest.approx(2 * 2 / 6) and result.max_abs_delta == pytest.approx(0.2)
    assert agreement(reference, reference, 0.95).tag_f1 == 1.0  # nothing selected on either side


def _cli(*args):
    """``fiftyone-ram`` run by click in this process (the installed command's exit status and one line are
    checked in tests/test_cli_tag.py and tests/test_user_errors.py)."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_cli_precision_flag(parity_dir, tiny_cli_args, tiny_tagger, assert_same_tags):
    images = [parity_dir / "chelsea.png", parity_dir / "rocket.png"]
    runs = {}
    for precision in ("fp32", "bf16"):
        result = _cli("tag", *images, *tiny_cli_args("ram"), "--precision", precision, "--json")
        assert result.exit_code == 0, result.output
        runs[precision] = [json.loads(line) for line in result.stdout.splitlines()]
    tagger = tiny_tagger("ram", precision="fp32")
    assert_same_tags([[(t["tag"], t["probability"]) for t in r["tags"]] for r in runs["fp32"]],
                     tagger.predict([str(p) for p in images]), thresholds=tagger.thresholds, names=tagger.names())
    fp32 = [{t["tag"]: t["probability"] for t in r["tags"]} for r in runs["fp32"]]
    bf16 = [{t["tag"]: t["probability"] for t in r["tags"]} for r in runs["bf16"]]
    assert fp32 != bf16  # the flag reached the model
    pooled = [len(a.keys() & b.keys()) * 2 / (len(a) + len(b)) for a, b in zip(fp32, bf16, strict=True)]
    assert min(pooled) >= MIN_F1["bf16"]

    bad = _cli("tag", images[0], *tiny_cli_args("ram"), "--precision", "fp8")
    assert bad.exit_code == 2 and "'fp8' is not one of" in bad.stderr


@pytest.mark.parametrize("command", [["tag"], ["generate"], ["clean"], ["benchmark"]])
def test_every_command_that_loads_a_tagger_takes_precision(command):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "--precision [auto|fp32|bf16|fp16|int8]" in result.output


def test_forms_pass_precision():
    from fiftyone_ram.app.forms import PRECISION_LABELS, model_kwargs

    assert list(PRECISION_LABELS) == list(hardware.PRECISION_CHOICES)
    assert model_kwargs({"model": "ram_swin_large_14m", "precision": "int8"})["precision"] == "int8"


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8"])
def test_tag2text_captions_at_every_precision(tiny_tagger, parity_pngs, precision):
    """The caption branch shares upstream's tied weights with the tagging head; reducing the head must leave
    the captioner its fp32 weights (it crashed with 'mat1 and mat2 must have the same dtype' at bf16)."""
    reference, reduced = tiny_tagger("tag2text", precision="fp32"), tiny_tagger("tag2text", precision=precision)
    images = [str(p) for p in parity_pngs[:2]]
    captions = reduced.caption(images)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)
    if precision != "int8":  # int8 moves the image tokens the captioner reads further: other beams can win
        assert reduced.caption(images, tags="w8 | w58") == reference.caption(images, tags="w8 | w58")
    else:
        assert all(c for c in reduced.caption(images, tags="w8 | w58"))
    dtypes = {p.dtype for part in (reduced.model.tag_encoder, reduced.model.text_decoder) for p in part.parameters()}
    assert dtypes == {torch.float32}
    if precision != "int8":  # the head is reduced, its tied twin in the tag encoder is not
        head = reduced.model.tagging_head.encoder.layer[0].crossattention.self.query.weight
        assert head.dtype == HALF[precision]


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: How far static int8 scores of one image move with its batch companions (batches of 1, 2 and 5): measured
#: 2e-8 (RAM, Tag2Text: fixed scales, exact integer sums) and 0.014 (RAM++, whose per-image queries carry the
#: fp32 rounding of other batch shapes across a quantisation step). Dynamic int8 moved them by up to 0.15.
INT8_BATCH_ATOL = {"ram": 1e-6, "tag2text": 1e-6, "ram_plus": 0.03}


@pytest.mark.parametrize("family", ["ram", "ram_plus", "tag2text"])
def test_static_int8_is_batch_invariant(tiny_tagger, parity_pngs, family):
    tagger = tiny_tagger(family, precision="int8")
    images = [str(p) for p in parity_pngs]
    together = tagger.probabilities(images)
    alone = np.concatenate([tagger.probabilities([image]) for image in images])
    in_pairs = np.concatenate([b.probabilities for b in tagger.iter_batches(images, batch_size=2)])
    assert np.abs(alone - together).max() <= INT8_BATCH_ATOL[family]
    assert np.abs(in_pairs - together).max() <= INT8_BATCH_ATOL[family]


def test_int8_calibration_is_cached_per_checkpoint_and_can_be_given(tiny_tagger, parity_pngs, tmp_home):
    from fiftyone_ram.assets import ram_home

    first = tiny_tagger("ram", precision="int8")
    cached = list((ram_home() / "int8").glob("*-ram-4585-v*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())
    again = tiny_tagger("ram", precision="int8")  # from the cache: same scales, same scores
    images = [str(p) for p in parity_pngs[:2]]
    np.testing.assert_array_equal(first.probabilities(images), again.probabilities(images))
    own = tiny_tagger("ram", precision="int8", calibration=[str(p) for p in parity_pngs])
    fc1 = own.model.visual_encoder.layers[0].blocks[0].mlp.fc1
    assert fc1.input_scale != first.model.visual_encoder.layers[0].blocks[0].mlp.fc1.input_scale


def test_a_compiled_half_precision_is_refused_on_a_cpu_running_avx2_kernels(monkeypatch, tiny_tagger, tmp_path):
    """Compiled bf16 under AVX2 kernels returned NaN for every score (docs/benchmarks.md): refused in one line,
    before the checkpoint is read; eager bf16 and compiled int8 / fp32 are not refused there."""
    from fiftyone_ram import load_tagger

    monkeypatch.setattr(hardware, "detect_capabilities", lambda device: AVX2)
    for precision in ("bf16", "fp16"):
        with pytest.raises(PrecisionError) as refused:
            load_tagger("ram_swin_large_14m", tmp_path / "nothing.pth", precision=precision, compile=True)
        line = str(refused.value)
        assert "\n" not in line and f"compiled {precision} is not safe on this CPU (AVX2 kernels" in line, line
    hardware.check_compile("int8", CPU)
    hardware.check_compile("fp32", CPU)
    eager = tiny_tagger("ram", precision="bf16")  # the tagger itself refuses to be compiled afterwards
    with pytest.raises(PrecisionError, match="compiled bf16 is not safe"):
        eager.compile()
    assert not eager.compiled
    monkeypatch.setattr(hardware, "detect_capabilities", lambda device: AVX512_BF16)
    hardware.check_compile("bf16", CPU)  # AVX-512 kernels: allowed (measured right, docs/benchmarks.md)
    monkeypatch.setattr(hardware, "detect_capabilities", lambda device: ARM)
    hardware.check_compile("bf16", CPU)  # not measured there: not refused


@pytest.mark.slow
def test_compiled_tagger_agrees_and_says_its_compile_time(tiny_tagger, parity_pngs, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    images = [str(p) for p in parity_pngs[:3]]
    eager = tiny_tagger("ram", precision="fp32")
    compiled = tiny_tagger("ram", precision="fp32", compile=True)
    assert compiled.compiled and compiled.compile_seconds == 0.0
    np.testing.assert_allclose(compiled.probabilities(images), eager.probabilities(images), rtol=0, atol=1e-5)
    assert compiled.compile_seconds > 0
