"""Shared builders of the engine tests (tiny models, patterned images, datasets), and the tests of crops and
encoders. Models are built once per test process (``functools.cache``): loading is most of the cost."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"
PNGS = [PARITY / f"{name}.png" for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")]
#: RAM tag names the patterned images stand for (all in RAM's tag list, so the tagger scores them).
CATEGORIES = ("dog", "cat", "car")


@pytest.fixture()
def one_thread():
    """Torch on one thread during a test: on a shared two-core machine, two threads made the tiny models
    six times slower (thread contention); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def ram_tagger(zero_thresholds_but: str | None = None):
    """The tiny RAM of the parity fixtures. With ``zero_thresholds_but``, every class threshold is 0 (always
    predicted) except that tag's, 1 (never predicted): a tagger whose verdict on crops is known."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.tag_files import read_tag_list

    thresholds = UPSTREAM / "ram_tag_list_threshold.txt"
    if zero_thresholds_but is not None:
        names = read_tag_list(UPSTREAM / "ram_tag_list.txt")
        thresholds = [1.0 if name == zero_thresholds_but else 0.0 for name in names]
    return load_tagger(PARITY / "fixtures_tiny.json", PARITY / "ram_tiny.pth", family="ram",
                       tag_list=UPSTREAM / "ram_tag_list.txt", thresholds=thresholds, device="cpu", batch_size=16)


@functools.cache
def tag2text_tagger():
    from fiftyone_ram import load_tagger

    return load_tagger(PARITY / "fixtures_tiny.json", PARITY / "tag2text_tiny.pth", family="tag2text",
                       tag_list=UPSTREAM / "tag2text_ori_tag_list.txt", device="cpu")


#: A small label system for caption parsing; "w8" and "w58" are words the tiny Tag2Text writes.
PARSER_TAGS = ("man", "horse", "beach", "dog", "cat", "snow", "w8", "w58")


@functools.cache
def caption_parser():
    from fiftyone_ram.labels.caption_parser import CaptionParser
    from fiftyone_ram.labels.label_system import LabelSystem

    return CaptionParser(LabelSystem(names=PARSER_TAGS))


@functools.cache
def tiny_grounding_dino() -> Path:
    """A Grounding-DINO with random weights and transformers' own processor, saved to a folder (no
    downloads): Swin backbone and BERT text encoder scaled down, a tokenizer from a written vocabulary."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder = Path(tempfile.mkdtemp(prefix="tiny-gdino-"))
    atexit.register(shutil.rmtree, folder, True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *CATEGORIES, "a", "the"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                                   num_heads=[1, 1, 1, 1], window_size=2,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, num_feature_levels=3,
        encoder_n_points=2, decoder_n_points=2, max_text_len=32, use_pretrained_backbone=False,
        use_timm_backbone=False)
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@functools.cache
def tiny_clip():
    """``CLIPVisionModelWithProjection`` with random weights and a 32-pixel image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=24)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPVisionModelWithProjection(config).eval(), processor


def pattern(category: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Pixels that stand for a category: red stripes (dog), blue checks (cat), green bands (car)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 3))
    if category == "dog":
        out[..., 0] = 200 + 55 * ((xx // 4) % 2)
    elif category == "cat":
        out[..., 2] = 120 + 135 * (((xx // 6) + (yy // 6)) % 2)
    else:
        out[..., 1] = 150 + 100 * ((yy // 5) % 2)
    return np.clip(out + rng.normal(0, 8, out.shape), 0, 255)


def patterned_image(path: Path, objects: list[tuple[str, tuple[float, float, float, float]]], seed: int) -> Path:
    """A 96x96 gray-noise image with each (category, relative box) painted in the category's pattern."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(128, 20, (96, 96, 3))
    for category, (x, y, w, h) in objects:
        x0, y0, x1, y1 = int(x * 96), int(y * 96), int((x + w) * 96), int((y + h) * 96)
        pixels[y0:y1, x0:x1] = pattern(category, (y1 - y0, x1 - x0), rng)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def cleaning_dataset(folder: Path, name: str | None = None, *, per_category: int = 6):
    """Samples tagged (field ``gt``) with one or two of CATEGORIES, each tag boxed in ``objects``.

    Wrong tags, known: sample ``wrong_dog`` is tagged dog but its dog box paints a cat; ``wrong_car`` is
    tagged car with a dog inside; ``unboxed`` has a cat tag with no cat box. Returns (dataset, wrong) with
    wrong = {(filename, tag)} of the injected errors.
    """
    import fiftyone as fo

    boxes = [(0.1, 0.1, 0.35, 0.35), (0.55, 0.55, 0.35, 0.35)]
    specs = []
    for i in range(per_category):
        for j, category in enumerate(CATEGORIES):
            other = CATEGORIES[(j + 1) % 3] if i % 3 == 0 else None
            specs.append((f"{category}{i}.png", [category] + ([other] if other else []),
                          [(category, category)] + ([(other, other)] if other else [])))
    # (file, tags, [(box label, painted pattern)])
    specs.append(("wrong_dog.png", ["dog"], [("dog", "cat")]))
    specs.append(("wrong_car.png", ["car", "cat"], [("car", "dog"), ("cat", "cat")]))
    specs.append(("unboxed.png", ["dog", "cat"], [("dog", "dog")]))
    samples = []
    for seed, (filename, tags, objects) in enumerate(specs):
        painted = [(paint, boxes[k]) for k, (_, paint) in enumerate(objects)]
        path = patterned_image(folder / filename, painted, seed)
        detections = [fo.Detection(label=label, bounding_box=list(boxes[k]), confidence=0.9)
                      for k, (label, _) in enumerate(objects)]
        samples.append(fo.Sample(filepath=str(path), gt=fo.Classifications(
            classifications=[fo.Classification(label=t) for t in tags]), objects=fo.Detections(detections=detections)))
    dataset = fo.Dataset(name)
    dataset.add_samples(samples)
    wrong = {("wrong_dog.png", "dog"), ("wrong_car.png", "car"), ("unboxed.png", "cat")}
    return dataset, wrong


# -- tests of crops and encoders ----------------------------------------------------------------------


def test_crop_is_in_memory_clamped_and_never_empty():
    from fiftyone_ram.engine.crops import MIN_CROP_PIXELS, crop

    image = Image.new("RGB", (100, 50))
    assert crop(image, (0.1, 0.2, 0.5, 0.4)).size == (50, 20)
    assert crop(image, (0.9, 0.9, 0.5, 0.5)).size == (10, 5 if 5 >= MIN_CROP_PIXELS else MIN_CROP_PIXELS)
    assert crop(image, (0.5, 0.5, 0.0, 0.0)).size == (MIN_CROP_PIXELS, MIN_CROP_PIXELS)
    assert crop(image, (0.2, 0.2, 0.2, 0.2), margin=0.5).size == (40, 20)


def test_tagger_encoder_embeds_and_scores_each_crops_own_category():
    from fiftyone_ram.engine.crops import TaggerCrops

    tagger = ram_tagger("car")
    crops = [Image.open(p).convert("RGB").crop((0, 0, 120, 90)) for p in PNGS[:3]]
    encoder = TaggerCrops(tagger)
    embeddings, probs = encoder.encode(crops, ["dog", "cat", "not a ram tag"])
    assert embeddings.shape == (3, 512)
    assert np.allclose(embeddings, tagger.embed(crops), atol=1e-5)
    expected = tagger.probabilities(crops, ["dog", "cat"])
    assert probs[:2] == pytest.approx([expected[0, 0], expected[1, 1]], abs=1e-5)
    assert np.isnan(probs[2]) and encoder.threshold("not a ram tag") is None
    assert encoder.threshold("dog") == 0.0 and encoder.threshold("car") == 1.0


def test_clip_encoder_gives_projected_embeddings():
    from fiftyone_ram.engine.crops import ClipCrops, EncoderWithTagger

    model, processor = tiny_clip()
    crops = [Image.open(p).convert("RGB") for p in PNGS[:2]]
    embeddings, probs = ClipCrops((model, processor), device="cpu").encode(crops, ["dog", "cat"])
    assert embeddings.shape == (2, 24) and probs is None
    both = EncoderWithTagger(ClipCrops((model, processor), device="cpu"), ram_tagger("car"))
    embeddings2, probs2 = both.encode(crops, ["dog", "cat"])
    assert np.allclose(embeddings, embeddings2) and probs2.shape == (2,)


@functools.cache
def tiny_clip_folder() -> Path:
    """:func:`tiny_clip` saved where ``from_pretrained`` reads it (what the CLI and the operator load)."""
    model, processor = tiny_clip()
    folder = Path(tempfile.mkdtemp(prefix="tiny-clip-"))
    atexit.register(shutil.rmtree, folder, True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def parser_tag_file(folder: Path) -> Path:
    path = folder / "parser_tags.txt"
    path.write_text("\n".join(PARSER_TAGS) + "\n")
    return path
