"""What the tests share, all of it as fixtures (pytest's way of sharing across test files: no test module
imports another, nor this one, so every import mode works, ``--import-mode=importlib`` included).

- an isolated FiftyOne database and home folders, and the paths of ../shared;
- the two comparisons that make a test hold on any CPU: :func:`assert_scores_close` and
  :func:`assert_same_tags` (with :func:`near_threshold`);
- loaders of the tiny upstream-layout checkpoints, and tiny random models written to disk (never downloaded);
- builders of test data: copies of the fixture PNGs, patterned images in a tagged dataset, bad files.

Session-scoped fixtures are shared by every test that asks for them: no test may change them. A test that
needs a changed object makes its own (``tiny_tagger``, ``copy.copy``) or a function-scoped one.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "parity"
UPSTREAM = SHARED / "upstream"

# FiftyOne reads its configuration when first imported, so the isolation must be set up before that.
_TMP = Path(tempfile.mkdtemp(prefix="fiftyone-ram-tests-"))
_DB_PREFIX = "fiftyone_ram_tests_"
# A database of this run's own, dropped at its end; each pytest-xdist worker has its own (a worker inherits the
# name its controller set, and dropping a shared one at the end of one worker would pull it from the other).
if os.environ.get("FIFTYONE_DATABASE_NAME", _DB_PREFIX).startswith(_DB_PREFIX):
    os.environ["FIFTYONE_DATABASE_NAME"] = f"{_DB_PREFIX}{os.getpid()}"
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_TMP / "datasets")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = str(_TMP / "zoo")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_TMP / "plugins")
os.environ["FIFTYONE_RAM_HOME"] = str(_TMP / "ram-home")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one math thread each (and in the processes they start), or each worker's
    # threads spin waiting for a core the other worker holds.
    os.environ.setdefault("OMP_NUM_THREADS", "1")



(_TMP / "plugins").mkdir(parents=True, exist_ok=True)
# The plugin is installed the way developers do it: a link from the plugins folder to the checkout.
os.symlink(ROOT, _TMP / "plugins" / "fiftyone-ram", target_is_directory=True)


def pytest_configure(config):
    """Under pytest-xdist, the controller connects to FiftyOne's database before it starts the workers: two
    workers connecting first at once would each start a database service, and one of them fails to bind."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        import fiftyone.core.odm as foo

        foo.get_db_client().admin.command("ping")


def pytest_sessionfinish(session, exitstatus):
    """Drop the per-run database and folders so repeated runs leave nothing behind."""
    import sys

    shutil.rmtree(_TMP, ignore_errors=True)
    if "fiftyone" not in sys.modules:
        return
    try:
        import fiftyone.core.odm as foo

        foo.get_db_client().drop_database(os.environ["FIFTYONE_DATABASE_NAME"])
    except Exception:  # the database may never have been started
        pass


# -- paths ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"missing test data: {PARITY} (see ../shared/README.md)")
    return PARITY


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    if not UPSTREAM.is_dir():
        pytest.fail(f"missing test data: {UPSTREAM} (see ../shared/README.md)")
    return UPSTREAM


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tmp_home() -> Path:
    return _TMP


def _fresh_dir(prefix: str) -> Path:
    """A new folder for this run's session-wide files, removed with the run's folder at the end."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_TMP))


# -- comparisons that hold on any CPU ---------------------------------------------------------------------

#: How far float32 scores (probabilities, embeddings) of one model on one input may drift apart between
#: SIMD kernels (AVX2 / AVX-512), batch shapes and thread counts: each changes the order of the float32
#: reductions. Measured on the tiny checkpoints: RAM++ probabilities up to 6.9e-6 apart (one thread against
#: two, batches of 1, 2 and 5), 5.2e-6 between AVX-512 and AVX2 kernels; RAM and Tag2Text below 2e-6.
SCORE_ATOL = 1e-5
#: A tag whose probability is this close to its threshold may be predicted on one machine and not on another.
THRESHOLD_MARGIN = SCORE_ATOL
#: How far one image's score may move between two paths of the same tagger at a reduced precision (other batch
#: shapes and companions). Measured on the tiny checkpoints, batches of 1, 4 and 5: bf16 0 (RAM, Tag2Text) to
#: 0.034 (RAM++'s per-image queries), dynamic int8 up to 0.15 (activations are quantised per batch).
PATH_ATOL = {"fp32": SCORE_ATOL, "bf16": 0.05, "fp16": 0.05, "int8": 0.2}


def _numbers(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _assert_scores_close(actual, expected, *, atol: float = SCORE_ATOL, err_msg: str = "") -> None:
    """``actual`` equals ``expected`` to ``atol`` absolutely (arrays, tensors, lists or numbers)."""
    assert atol >= SCORE_ATOL, f"float32 scores are only reproducible to {SCORE_ATOL}: never compare tighter"
    np.testing.assert_allclose(_numbers(actual), _numbers(expected), rtol=0, atol=atol, err_msg=err_msg)


def _near_threshold(probabilities, thresholds, *, margin: float = THRESHOLD_MARGIN) -> np.ndarray:
    """Where a probability is within ``margin`` of its threshold (broadcast as numpy does): the decisions
    another machine may take the other way."""
    return np.abs(_numbers(probabilities) - _numbers(thresholds)) <= margin


def _by_name(names: Sequence[str], values: Sequence[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, value in zip(names, values, strict=True):  # a name may repeat (Chinese names, homographs)
        out.setdefault(name, []).append(float(value))
    return out


def _split(row) -> tuple[list[str], list[float | None]]:
    names = [item if isinstance(item, str) else item[0] for item in row]
    probabilities = [None if isinstance(item, str) else float(item[1]) for item in row]
    return names, probabilities


def _assert_same_tags(got, want, *, thresholds: float | Sequence[float], names: Sequence[str] | None = None,
                      probabilities: Sequence[Sequence[float]] | None = None,
                      ordered: bool = True, margin: float = THRESHOLD_MARGIN, atol: float = SCORE_ATOL) -> None:
    """Per image, the same tags (``got`` and ``want``: per image, ``(name, probability)`` pairs or bare names),
    except that a tag whose probability sits within ``margin`` of its threshold may be on one side only.

    ``thresholds``: one number, or one per tag of ``names``. The probability of a one-sided tag is its own
    side's, or its reference score in ``probabilities`` (per image, one per tag of ``names``: for a side that
    gives names only). The tags both sides have come in the same order (unless ``ordered=False``) with
    probabilities equal to ``atol``. Two paths of a reduced-precision tagger: ``**path_tolerance(precision)``.
    """
    assert margin >= THRESHOLD_MARGIN, f"decisions are only reproducible {THRESHOLD_MARGIN} from a threshold"
    if isinstance(thresholds, (int, float, np.floating)):
        limits: Callable[[str], list[float]] = lambda name: [float(thresholds)]  # noqa: E731
    else:
        assert names is not None, "per-tag thresholds need the tag names they belong to"
        table = _by_name(names, thresholds)
        limits = lambda name: table[name]  # noqa: E731
    assert len(got) == len(want), f"{len(got)} predictions for {len(want)} images"
    if probabilities is not None:
        assert names is not None, "reference probabilities need the tag names they belong to"
        reference = [_by_name(names, row) for row in probabilities]
    for i, (got_row, want_row) in enumerate(zip(got, want)):
        got_names, got_p = _split(got_row)
        want_names, want_p = _split(want_row)
        one_sided = set(got_names) ^ set(want_names)
        for name in sorted(one_sided):
            scores = [p for n, p in zip(got_names + want_names, got_p + want_p) if n == name and p is not None]
            scores += reference[i].get(name, []) if probabilities is not None else []
            assert scores, f"image {i}: no probability for {name!r}, predicted on one side only"
            assert any(abs(p - t) <= margin for p in scores for t in limits(name)), (
                f"image {i}: {name!r} predicted on one side only, with probability {scores} not within "
                f"{margin} of its threshold {limits(name)}")
        got_kept = [(n, p) for n, p in zip(got_names, got_p) if n not in one_sided]
        want_kept = [(n, p) for n, p in zip(want_names, want_p) if n not in one_sided]
        if not ordered:
            got_kept, want_kept = sorted(got_kept, key=_name_first), sorted(want_kept, key=_name_first)
        assert [n for n, _ in got_kept] == [n for n, _ in want_kept], f"image {i}: other tags"
        pairs = [(a, b) for (_, a), (_, b) in zip(got_kept, want_kept) if a is not None and b is not None]
        if pairs:
            _assert_scores_close(*zip(*pairs), atol=atol,
                                 err_msg=f"image {i}: probabilities of {[n for n, _ in got_kept]}")


def _name_first(item: tuple[str, float | None]) -> tuple[str, float]:
    return item[0], -1.0 if item[1] is None else item[1]


@pytest.fixture(scope="session")
def assert_scores_close() -> Callable[..., None]:
    """``assert_scores_close(actual, expected)``: float32 model outputs equal to ``SCORE_ATOL`` (1e-5)
    absolutely. Use it wherever two computations of a score may round differently (other batch shapes,
    code paths, processes, kernels); ``atol`` may be larger (against upstream), never smaller."""
    return _assert_scores_close


@pytest.fixture(scope="session")
def assert_same_tags() -> Callable[..., None]:
    """``assert_same_tags(got, want, thresholds=..., names=...)``: the same predicted tags per image but for
    tags within ``THRESHOLD_MARGIN`` (1e-5) of their threshold, probabilities to ``SCORE_ATOL``."""
    return _assert_same_tags


@pytest.fixture(scope="session")
def path_tolerance() -> Callable[[str], dict[str, float]]:
    """``path_tolerance(precision)``: the ``atol`` and ``margin`` of :func:`assert_same_tags` for two paths of one
    tagger at ``precision`` (a tagger's ``.precision``): :data:`PATH_ATOL`."""
    return lambda precision: {"atol": PATH_ATOL[precision], "margin": max(PATH_ATOL[precision], THRESHOLD_MARGIN)}


@pytest.fixture(scope="session")
def near_threshold() -> Callable[..., np.ndarray]:
    """``near_threshold(probabilities, thresholds)``: the mask of decisions within ``THRESHOLD_MARGIN``,
    for tests that count decisions themselves (a count may move by the ones it marks)."""
    return _near_threshold


# -- the tiny upstream-layout checkpoints ------------------------------------------------------------------

#: The fixture images, in the order the parity fixtures list them.
PNG_NAMES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "camera.png")


def _tag_files(family: str) -> dict[str, Path]:
    """Upstream's tag lists for a family (Tag2Text has no Chinese names and one threshold for all)."""
    if family == "tag2text":
        return {"tag_list": UPSTREAM / "tag2text_ori_tag_list.txt"}
    return {"tag_list": UPSTREAM / "ram_tag_list.txt", "tag_list_chinese": UPSTREAM / "ram_tag_list_chinese.txt",
            "thresholds": UPSTREAM / "ram_tag_list_threshold.txt"}


def _load_tiny_tagger(family: str, checkpoint: str | Path | None = None, **overrides):
    """``overrides``: ``load_tagger``'s options; the vocabulary's (``tags=``, ``descriptions=``...) may be given
    flat here, for short tests."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.vocabulary import VocabularySpec

    checkpoint = PARITY / f"{family}_tiny.pth" if checkpoint is None else checkpoint
    vocabulary = {k: overrides.pop(k) for k in VocabularySpec.names() if k in overrides}
    if vocabulary:
        overrides["vocabulary"] = VocabularySpec(**vocabulary)
    options = {"family": family, "device": "cpu", **_tag_files(family), **overrides}
    return load_tagger(PARITY / "fixtures_tiny.json", checkpoint, **options)


@pytest.fixture(scope="session")
def parity_pngs(parity_dir) -> list[Path]:
    return [parity_dir / name for name in PNG_NAMES]


@pytest.fixture(scope="session")
def copy_pngs(parity_dir) -> Callable[[Path], list[Path]]:
    """``copy_pngs(folder)``: the five fixture PNGs copied into ``folder`` (for tests that move or add files)."""

    def copy(folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copyfile(parity_dir / name, folder / name)) for name in PNG_NAMES]

    return copy


@pytest.fixture(scope="session")
def tiny_tagger(parity_dir, upstream_dir) -> Callable[..., object]:
    """``tiny_tagger(family, checkpoint=None, **load_tagger_keywords)``: a new Tagger of the family's tiny
    checkpoint with upstream's tag lists, on the CPU. Each call loads its own: the caller may change it."""
    return _load_tiny_tagger


@pytest.fixture(scope="session")
def tiny_model_settings(parity_dir, upstream_dir) -> Callable[..., dict]:
    """``tiny_model_settings(family="ram", **extra)``: ``fiftyone_ram.fiftyone.load_model`` keywords for a
    tiny checkpoint (paths as strings, as FiftyOne model configs hold them)."""

    def settings(family: str = "ram", **extra) -> dict:
        files = {k: str(v) for k, v in _tag_files(family).items() if k != "tag_list_chinese"}
        return {"config": str(parity_dir / "fixtures_tiny.json"), "family": family,
                "checkpoint_path": str(parity_dir / f"{family}_tiny.pth"), **files, **extra}

    return settings


@pytest.fixture(scope="session")
def tiny_cli_args(parity_dir, upstream_dir) -> Callable[[str], list[str]]:
    """``tiny_cli_args(family)``: the ``--model/--config/--checkpoint/--tag-list/--thresholds`` options of
    ``fiftyone-ram tag``, ``generate`` and ``clean`` for a tiny checkpoint."""

    def args(family: str = "ram") -> list[str]:
        files = _tag_files(family)
        out = ["--model", family, "--config", str(parity_dir / "fixtures_tiny.json"),
               "--checkpoint", str(parity_dir / f"{family}_tiny.pth"), "--tag-list", str(files["tag_list"])]
        return out + (["--thresholds", str(files["thresholds"])] if "thresholds" in files else [])

    return args


@pytest.fixture(scope="session")
def ram_never_car(parity_dir, upstream_dir):
    """The tiny RAM with every class threshold 0 (always predicted) but car's, 1 (never predicted): a tagger
    whose verdict on crops is known. Shared: read it, never change it."""
    from fiftyone_ram.tag_files import read_tag_list

    names = read_tag_list(upstream_dir / "ram_tag_list.txt")
    return _load_tiny_tagger("ram", thresholds=[1.0 if name == "car" else 0.0 for name in names], batch_size=16)


@pytest.fixture(scope="session")
def tiny_tag2text():
    """The tiny Tag2Text (tags and captions). Shared: read it, never change it."""
    return _load_tiny_tagger("tag2text")


@pytest.fixture()
def one_thread():
    """Torch on one thread during a test: on a shared two-core machine, two threads made the tiny models
    six times slower (thread contention); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- Ray ---------------------------------------------------------------------------------------------------

#: The fixture of the tests' local Ray cluster (see :func:`ray_cluster`).
RAY_CLUSTER = "ray_cluster"


@pytest.fixture()
def ray_cluster() -> str:
    """A local Ray cluster of two CPUs that this process is connected to; its address for other drivers.

    One cluster serves the consecutive tests that ask for it, across modules (starting and stopping one costs
    seconds, and the pipelines of one driver reuse its decoding processes): it is started by the first and shut
    down after the last of the run (:func:`pytest_runtest_teardown`), so tests after it find no Ray here."""
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray[data] (pip install '.[ray]')")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    return ray.get_runtime_context().gcs_address


def _uses_cluster(item) -> bool:
    return RAY_CLUSTER in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """The work units of pytest-xdist (the README's ``-n 2 --dist loadgroup``): a test module runs in one worker
    (its module-scoped fixtures are built once); the browser tests share one worker (one App server); the tests
    that start, join or look for a Ray cluster share one too, one after the other (a cluster per worker would
    take both cores, and a test that checks that no cluster runs here would find the other worker's)."""
    for item in items:
        if _uses_cluster(item) or item.get_closest_marker("ray"):
            group = "ray"
        elif Path(str(item.path)).parent.name == "app":
            group = "app"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Shut the tests' Ray cluster (or any Ray this process joined) down unless a later test uses the cluster
    with only tests of modules that use it too in between: tests of other modules find this process unconnected."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    if nextitem is not None:
        items = item.session.items
        with_cluster = {getattr(other, "module", None) for other in items if _uses_cluster(other)}
        for other in items[items.index(nextitem):]:
            if _uses_cluster(other):
                return
            if getattr(other, "module", None) not in with_cluster:
                break
    ray.shutdown()


# -- caption parsing ----------------------------------------------------------------------------------------

#: A small label system for caption parsing; "w8" and "w58" are words the tiny Tag2Text writes.
PARSER_TAGS = ("man", "horse", "beach", "dog", "cat", "snow", "w8", "w58")


@pytest.fixture(scope="session")
def caption_parser():
    """A caption parser over :data:`PARSER_TAGS`."""
    from fiftyone_ram.labels.caption_parser import CaptionParser
    from fiftyone_ram.labels.label_system import LabelSystem

    return CaptionParser(LabelSystem(names=PARSER_TAGS))


@pytest.fixture(scope="session")
def parser_tag_file() -> Callable[[Path], Path]:
    """``parser_tag_file(folder)``: :data:`PARSER_TAGS` written as a tag list file in ``folder``."""

    def write(folder: Path) -> Path:
        path = folder / "parser_tags.txt"
        path.write_text("\n".join(PARSER_TAGS) + "\n")
        return path

    return write


# -- tiny random models from transformers, written to disk --------------------------------------------------

#: Three of upstream's template shapes, written here so that no test needs the upstream download.
CLIP_TEMPLATES = ("a photo of {article} {}.", "itap of my {}.", "There is the {} in the scene.")
CLIP_CONTEXT = 77


def _write_tiny_clip_text(folder: Path, seed: int) -> Path:
    """A random CLIP text model with a 512-wide projection like ViT-B/16's (so that its embeddings fit the
    tiny checkpoints' label queries). The byte-level BPE vocabulary holds every printable ASCII character
    (alone and word-final): no test text falls back to the unknown token, which CLIP's tokenizer maps to
    end-of-text, where the pooling reads."""
    import json

    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    chars = [c for c in string.printable if not c.isspace()]
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    merges = ["t h", "th e</w>", "o f</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=CLIP_CONTEXT, projection_dim=512,
                            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                            pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(seed)
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clip_templates() -> tuple[str, ...]:
    return CLIP_TEMPLATES


@pytest.fixture(scope="session")
def tiny_clip_text_dir() -> Callable[[int], Path]:
    """``tiny_clip_text_dir(seed=0)``: the folder of a tiny random CLIP text model and its tokenizer, one per
    seed and test run."""
    folders: dict[int, Path] = {}

    def folder(seed: int = 0) -> Path:
        if seed not in folders:
            folders[seed] = _write_tiny_clip_text(_fresh_dir(f"tiny-clip-text-{seed}-"), seed)
        return folders[seed]

    return folder


@pytest.fixture(scope="session")
def clip_reference_embeddings() -> Callable:
    """``clip_reference_embeddings(folder, texts)``: transformers' CLIP straight on the texts (none longer
    than the context), L2-normalised: what the vocabulary formulas start from."""

    def embed(folder: Path, texts: list[str]):
        import torch
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(folder))
        model = CLIPTextModelWithProjection.from_pretrained(str(folder)).eval()
        batch = tokenizer(texts, padding="max_length", max_length=CLIP_CONTEXT, return_tensors="pt")
        with torch.no_grad():
            embeds = model(**batch).text_embeds
        return embeds / embeds.norm(dim=-1, keepdim=True)

    return embed


@pytest.fixture(scope="session")
def tiny_clip_vision():
    """``(CLIPVisionModelWithProjection, CLIPImageProcessor)`` with random weights and 32-pixel inputs.
    Shared: read it, never change it."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=24)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPVisionModelWithProjection(config).eval(), processor


@pytest.fixture(scope="session")
def tiny_clip_vision_dir(tiny_clip_vision) -> Path:
    """:func:`tiny_clip_vision` saved where ``from_pretrained`` reads it (what the CLI and operators load)."""
    model, processor = tiny_clip_vision
    folder = _fresh_dir("tiny-clip-vision-")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_grounding_dino() -> Path:
    """A Grounding-DINO with random weights and transformers' own processor, saved to a folder (no
    downloads): Swin backbone and BERT text encoder scaled down, a tokenizer from a written vocabulary."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder = _fresh_dir("tiny-gdino-")
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


# -- a tagged dataset of patterned images (tag cleaning and generation) -------------------------------------

#: RAM tag names the patterned images stand for (all in RAM's tag list, so the tagger scores them).
CATEGORIES = ("dog", "cat", "car")


def _pattern(category: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
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


def _patterned_image(path: Path, objects: list[tuple[str, tuple[float, float, float, float]]], seed: int) -> Path:
    """A 96x96 gray-noise image with each (category, relative box) painted in the category's pattern."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.normal(128, 20, (96, 96, 3))
    for category, (x, y, w, h) in objects:
        x0, y0, x1, y1 = int(x * 96), int(y * 96), int((x + w) * 96), int((y + h) * 96)
        pixels[y0:y1, x0:x1] = _pattern(category, (y1 - y0, x1 - x0), rng)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def _cleaning_dataset(folder: Path, name: str | None = None, *, per_category: int = 6):
    import fiftyone as fo

    boxes = [(0.1, 0.1, 0.35, 0.35), (0.55, 0.55, 0.35, 0.35)]
    specs = []  # (file, tags, [(box label, painted pattern)])
    for i in range(per_category):
        for j, category in enumerate(CATEGORIES):
            other = CATEGORIES[(j + 1) % 3] if i % 3 == 0 else None
            specs.append((f"{category}{i}.png", [category] + ([other] if other else []),
                          [(category, category)] + ([(other, other)] if other else [])))
    specs.append(("wrong_dog.png", ["dog"], [("dog", "cat")]))
    specs.append(("wrong_car.png", ["car", "cat"], [("car", "dog"), ("cat", "cat")]))
    specs.append(("unboxed.png", ["dog", "cat"], [("dog", "dog")]))
    samples = []
    for seed, (filename, tags, objects) in enumerate(specs):
        painted = [(paint, boxes[k]) for k, (_, paint) in enumerate(objects)]
        path = _patterned_image(folder / filename, painted, seed)
        detections = [fo.Detection(label=label, bounding_box=list(boxes[k]), confidence=0.9)
                      for k, (label, _) in enumerate(objects)]
        samples.append(fo.Sample(filepath=str(path), gt=fo.Classifications(
            classifications=[fo.Classification(label=t) for t in tags]), objects=fo.Detections(detections=detections)))
    dataset = fo.Dataset(name)
    dataset.add_samples(samples)
    wrong = {("wrong_dog.png", "dog"), ("wrong_car.png", "car"), ("unboxed.png", "cat")}
    return dataset, wrong


@pytest.fixture(scope="session")
def cleaning_categories() -> tuple[str, ...]:
    return CATEGORIES


@pytest.fixture(scope="session")
def cleaning_dataset() -> Callable:
    """``cleaning_dataset(folder, name=None, *, per_category=6)``: a new dataset of patterned images in
    ``folder``, tagged (field ``gt``) with one or two of :data:`CATEGORIES`, each tag boxed in ``objects``.

    Wrong tags, known: sample ``wrong_dog`` is tagged dog but its dog box paints a cat; ``wrong_car`` is
    tagged car with a dog inside; ``unboxed`` has a cat tag with no cat box. Returns (dataset, wrong) with
    wrong = {(filename, tag)} of the injected errors. The caller owns (and deletes) the dataset.
    """
    return _cleaning_dataset


@pytest.fixture()
def captioned_cleaning_dataset(tmp_path, cleaning_dataset):
    """A :func:`cleaning_dataset` (four images per category) whose samples also carry a ``caption``; deleted
    after the test."""
    ds, _ = cleaning_dataset(tmp_path, per_category=4)
    ds.set_values("caption", ["a dog on the beach"] * len(ds))
    yield ds
    ds.delete()


# -- bad image files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadFiles:
    """Inputs FiftyOne tagging must cope with, by file name (read-only mappings)."""

    unreadable: Mapping[str, Path]  # each must be skipped and recorded; "missing.png" is never written
    odd: Mapping[str, Path]  # odd but valid: each must be tagged like any other

    def __getitem__(self, name: str) -> Path:
        return self.unreadable[name] if name in self.unreadable else self.odd[name]


@pytest.fixture(scope="session")
def bad_files(parity_dir) -> BadFiles:
    """The unreadable and odd inputs, made from the fixture PNGs once per run (the 30-megapixel JPEG takes a
    while). Shared: the files must not be changed."""
    from PIL import Image

    folder = _fresh_dir("bad-files-")
    unreadable = {n: folder / n for n in ("zero_byte.jpg", "truncated.png", "truncated.jpg", "text.jpg",
                                          "missing.png")}
    odd = {n: folder / n for n in ("huge_30mp.jpg", "cmyk.jpg", "rgba.png", "gray16.png", "palette.png",
                                   "exif_rotated.jpg")}
    astronaut = Image.open(parity_dir / "astronaut.png").convert("RGB")
    chelsea = Image.open(parity_dir / "chelsea.png").convert("RGB")

    unreadable["zero_byte.jpg"].write_bytes(b"")
    png = (parity_dir / "astronaut.png").read_bytes()
    unreadable["truncated.png"].write_bytes(png[: len(png) // 2])
    chelsea.save(folder / "full.jpg", quality=90)
    jpeg = (folder / "full.jpg").read_bytes()
    unreadable["truncated.jpg"].write_bytes(jpeg[: len(jpeg) * 3 // 5])
    (folder / "full.jpg").unlink()
    unreadable["text.jpg"].write_text("this is not an image\n")

    Image.open(parity_dir / "coffee.png").convert("RGB").resize((6000, 5000)).save(odd["huge_30mp.jpg"], quality=70)
    chelsea.convert("CMYK").save(odd["cmyk.jpg"], quality=90)
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(odd["rgba.png"])
    gray = np.asarray(Image.open(parity_dir / "camera.png").convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(odd["gray16.png"])  # PIL writes uint16 arrays as 16-bit grayscale PNG
    Image.open(parity_dir / "coffee.png").convert("RGB").convert("P", palette=Image.ADAPTIVE).save(odd["palette.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.open(parity_dir / "rocket.png").convert("RGB").save(odd["exif_rotated.jpg"], exif=exif, quality=90)
    return BadFiles(MappingProxyType(unreadable), MappingProxyType(odd))


# -- FiftyOne labels ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stored_tags() -> Callable:
    """``stored_tags(label)``: a ``Classifications`` field's value as ``Tagger.predict`` rows,
    ``[(label, confidence)]`` (None stays None)."""

    def rows(label):
        return None if label is None else [(c.label, c.confidence) for c in label.classifications]

    return rows


# -- a synthetic fine-tuning task: coloured shapes named by tags ------------------------------------------------

#: Shapes the synthetic images show, each in its own colour: three tags of RAM's vocabulary and a new one.
SHAPE_TAGS = {"circle": (220, 40, 40), "square": (40, 60, 220), "triangle": (40, 200, 60), "zigzag": (230, 210, 30)}
NEW_SHAPE_TAG = "zigzag"


def _shape_image(path: Path, names: Sequence[str], rng: np.random.Generator, boxes: list | None = None) -> Path:
    """A 96x96 gray-noise image with each named shape drawn in its colour, in its own quarter-ish cell; ``boxes``
    (a list) receives each shape's (name, relative [x, y, w, h])."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(rng.normal(128, 15, (96, 96, 3)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for k, name in enumerate(names):
        x, y = 8 + 44 * (k % 2) + int(rng.integers(0, 6)), 8 + 44 * (k // 2) + int(rng.integers(0, 30))
        x1, y1, colour = x + 38, y + 38, SHAPE_TAGS[name]
        if boxes is not None:
            boxes.append((name, [x / 96, y / 96, 38 / 96, 38 / 96]))
        if name == "circle":
            draw.ellipse([x, y, x1, y1], fill=colour)
        elif name == "square":
            draw.rectangle([x, y, x1, y1], fill=colour)
        elif name == "triangle":
            draw.polygon([(x, y1), (x1, y1), ((x + x1) // 2, y)], fill=colour)
        else:
            draw.line([(x, y), (x + 12, y1), (x + 24, y), (x1, y1)], fill=colour, width=6)
    image.save(path)
    return path


def _shapes_dataset(folder: Path, *, train: int = 36, validation: int = 24, seed: int = 0, name: str | None = None):
    """A dataset of shape images: field ``gt`` (Classifications) names the shapes; sample tags ``train`` and
    ``validation`` split it. Returns (dataset, tag file of the four shape tags)."""
    import fiftyone as fo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(SHAPE_TAGS)
    samples = []
    for i in range(train + validation):
        chosen = [names[j] for j in sorted(rng.choice(len(names), int(rng.integers(1, 3)), replace=False))]
        path = _shape_image(folder / f"shapes{i:03d}.png", chosen, rng)
        samples.append(fo.Sample(filepath=str(path), tags=["train" if i < train else "validation"],
                                 gt=fo.Classifications(classifications=[fo.Classification(label=t) for t in chosen])))
    return _with_tag_file(samples, folder, names, name)


def _with_tag_file(samples: list, folder: Path, names: Sequence[str], name: str | None):
    """A new dataset of ``samples`` and the file of its tag ``names`` (one per line) in ``folder``."""
    import fiftyone as fo

    dataset = fo.Dataset(name)
    dataset.add_samples(samples)
    tag_file = folder / "shape_tags.txt"
    tag_file.write_text("\n".join(names) + "\n")
    return dataset, tag_file


@pytest.fixture(scope="session")
def shapes_dataset() -> Callable:
    """``shapes_dataset(folder, *, train=36, validation=24, seed=0, name=None)``: a new dataset of coloured
    shapes (see :data:`SHAPE_TAGS`; ``zigzag`` is not a RAM tag) and the file of its four tags. The caller owns
    (and deletes) the dataset."""
    return _shapes_dataset


# -- a synthetic task with a known truth for the pipeline: captions that miss and invent shapes ---------------------

#: The shapes of :data:`SHAPE_TAGS` that are RAM tags.
RAM_SHAPES = tuple(name for name in SHAPE_TAGS if name != NEW_SHAPE_TAG)


def _captioned_shapes(folder: Path, *, seed: int = 0, train: int = 36, validation: int = 18, miss: float = 0.3,
                      extra: float = 0.1, box_miss: float = 0.05, box_confusion: float = 0.03,
                      name: str | None = None):
    """A dataset of 1-2 RAM shapes per image (:data:`RAM_SHAPES`) whose truth is known, generated from ``seed``:

    - ``truth``: the shapes drawn (Classifications);
    - ``caption``: "a circle and a square": each shape drawn is left out with probability ``miss``, each shape
      not drawn is named with probability ``extra`` (about 10 % of the named shapes are not there), at least one
      shape named;
    - ``boxes``: what a detector would give (Detections): each drawn shape's box, missed with probability
      ``box_miss``, named as another shape with probability ``box_confusion``;
    - sample tags ``train`` and ``validation`` (the clean validation view: its ``truth`` is what scores models).

    Returns (dataset, tag file of the three shapes). The caller owns (and deletes) the dataset."""
    import fiftyone as fo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = list(RAM_SHAPES)
    samples = []
    for i in range(train + validation):
        drawn = [shapes[j] for j in sorted(rng.choice(len(shapes), int(rng.integers(1, 3)), replace=False))]
        boxes: list = []
        path = _shape_image(folder / f"shapes{i:03d}.png", drawn, rng, boxes)
        named = [s for s in drawn if rng.random() >= miss]
        named = (named + [s for s in shapes if s not in drawn and rng.random() < extra]) or [drawn[0]]
        detections = []
        for shape, box in boxes:
            if rng.random() < box_miss:
                continue
            label = shape if rng.random() >= box_confusion else shapes[(shapes.index(shape) + 1) % len(shapes)]
            detections.append(fo.Detection(label=label, bounding_box=box, confidence=0.9))
        samples.append(fo.Sample(
            filepath=str(path), tags=["train" if i < train else "validation"],
            truth=fo.Classifications(classifications=[fo.Classification(label=s) for s in drawn]),
            caption=" and ".join(f"a {s}" for s in named), boxes=fo.Detections(detections=detections)))
    return _with_tag_file(samples, folder, shapes, name)


@pytest.fixture(scope="session")
def captioned_shapes() -> Callable:
    """``captioned_shapes(folder, *, seed=0, train=36, validation=18, miss=0.3, extra=0.1, box_miss=0.05,
    box_confusion=0.03, name=None)``: the pipeline's synthetic task (see :func:`_captioned_shapes`)."""
    return _captioned_shapes


@pytest.fixture(scope="session")
def pipeline_spec(parity_dir, upstream_dir) -> Callable[..., dict]:
    """``pipeline_spec(dataset, tag_file, output, **changes)``: a pipeline spec (``fiftyone_ram.pipeline``) over the
    tiny RAM checkpoint answering the shape tags of ``tag_file``, with :func:`captioned_shapes`' fields (prefix
    ``pl``, regions from ``boxes``)."""

    def spec(dataset, tag_file: Path, output: Path, **changes) -> dict:
        model = {"model": str(parity_dir / "fixtures_tiny.json"), "checkpoint": str(parity_dir / "ram_tiny.pth"),
                 "family": "ram", "tag_list": str(upstream_dir / "ram_tag_list.txt"),
                 "thresholds": str(upstream_dir / "ram_tag_list_threshold.txt"), "device": "cpu",
                 "vocabulary": {"tags": str(tag_file)}}
        values = {"dataset": dataset.name, "output_dir": str(output), "prefix": "pl", "caption_field": "caption",
                  "reference_field": "truth", "validation": "validation",
                  "parser_tags": str(upstream_dir / "ram_tag_list.txt"), "model": model,
                  "clean": {"regions_field": "boxes"}}
        values.update(changes)
        return values

    return spec
