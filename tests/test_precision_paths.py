"""Every path users take, at the precision they get, against fp32 on the same inputs: RAM, RAM++ and Tag2Text at
``auto`` (the default: bf16 on an AVX512_BF16 CPU), and at bf16 and int8 forced by the option (which one ``auto``
picks depends on the CPU), through the public doors: ``load_tagger`` (tags, probabilities, embeddings, captions),
an open-set vocabulary, the FiftyOne model (``apply_model``, ``compute_embeddings``), the tagging driver
(``tag_samples``, here and in Ray actors), generation, cleaning's tagger pass over crops and fine-tuning's
validation.

Each path is checked three ways: it ran at the precision asked (its scores are the reduced tagger's, to the
tolerance of two paths of one reduced tagger, ``path_tolerance``, and they moved from fp32's by more than
float32's noise: no path silently runs fp32); it agrees with fp32 (tag-set F1 at least 0.98 over the decisions
that are not on a knife edge: tags whose fp32 probability lies further than the path tolerance from their
threshold, upstream's per-class thresholds; the tiny random checkpoints put many of their 100-150 tags per image
within a few hundredths of a threshold, so a bare F1 would measure the fixture, not the path; the full-size figures
are ``benchmarks/precision_agreement.py``'s); and Tag2Text writes captions at every precision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch

fo = pytest.importorskip("fiftyone")

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("ram", "ram_plus", "tag2text")
#: The precisions forced by the option; "auto" is added where a path is cheap.
REDUCED = ("bf16", "int8")
#: Least tag-set F1 against fp32 over the decisions off the knife edge (issue 21: 0.98 at the full size).
MIN_F1 = 0.98
#: Below this largest |Δprobability| against fp32 a path ran fp32, not the precision asked (float32 alone moves
#: scores by 1e-5 at most; bf16 moves the tiny checkpoints' by 0.008 (Tag2Text) to 0.12 (RAM++)).
MOVED = 1e-4
#: Open-set tags (RAM, RAM++): two of the tag list and two embedded by the tiny CLIP text encoder.
OPEN_SET = ["cat", "dog", "Zeppelin", "yak-wool hat"]


def _auto() -> str:
    from fiftyone_ram.hardware import auto_precision, detect_capabilities

    return auto_precision(detect_capabilities(torch.device("cpu")))


def _resolved(precision: str) -> str:
    return _auto() if precision == "auto" else precision


def _variants(default: str | None = "auto") -> list:
    """``default`` (how a user leaves the precision: ``auto``) and the forced reduced precision that ``auto`` does
    not resolve to on this machine (``slow``: the inner loop checks what users run); the one ``auto`` resolves to
    would run the same code as ``default`` again."""
    auto = _auto()
    return [default, *(pytest.param(p, marks=pytest.mark.slow) for p in REDUCED if p != auto)]


# -- shared taggers and references ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagger_of(tiny_tagger):
    """``tagger_of(family, precision)``: the module's tiny tagger at that precision, loaded once. Shared: read it,
    never change it."""
    loaded: dict[tuple[str, str], object] = {}

    def get(family: str, precision: str):
        if (family, precision) not in loaded:
            loaded[family, precision] = tiny_tagger(family, precision=precision)
        return loaded[family, precision]

    return get


@pytest.fixture(scope="module")
def images(parity_pngs) -> list[str]:
    return [str(p) for p in parity_pngs]


@pytest.fixture(scope="module")
def fp32_probabilities(tagger_of, images):
    """``fp32_probabilities(family)``: the fp32 tagger's probabilities of the five images (the reference)."""
    cache: dict[str, np.ndarray] = {}

    def get(family: str) -> np.ndarray:
        if family not in cache:
            cache[family] = tagger_of(family, "fp32").probabilities(images)
        return cache[family]

    return get


def _rows(predictions) -> list[list[tuple[str, float]]]:
    return [[(name, float(p)) for name, p in row] for row in predictions]


def _off_edge_f1(got: Sequence[Sequence[tuple[str, float]]], reference, probabilities: np.ndarray,
                 margin: float) -> tuple[float, int]:
    """Tag-set F1 of ``got`` (per image, (tag, probability)) against the fp32 ``reference`` tagger's decisions on
    ``probabilities``, pooled over images, counting only tags whose fp32 probability is further than ``margin``
    from their threshold; and how many fp32 tags that counts."""
    names, limits = reference.tag_list, reference.thresholds
    assert len(got) == len(probabilities)
    agreed = selected = wanted = 0
    for row, scores in zip(got, probabilities):
        edge = {names[c] for c in np.flatnonzero(np.abs(scores - limits) <= margin)}  # homographs: by name
        want = {names[c] for c in np.flatnonzero(scores > limits) if not reference.excluded[c]} - edge
        have = {name for name, _ in row} - edge
        agreed, selected, wanted = agreed + len(want & have), selected + len(want) + len(have), wanted + len(want)
    return (1.0 if selected == 0 else 2 * agreed / selected), wanted


def _largest_move(got: Sequence[Sequence[tuple[str, float]]], want: Sequence[Sequence[tuple[str, float]]]) -> float:
    """The largest |Δprobability| of a tag both sides predicted for the same image."""
    moves = [0.0]
    for got_row, want_row in zip(got, want, strict=True):
        theirs = dict(want_row)
        moves += [abs(p - theirs[name]) for name, p in got_row if name in theirs]
    return max(moves)


@pytest.fixture(scope="module")
def check_against_fp32(tagger_of, images, fp32_probabilities, path_tolerance, assert_same_tags):
    """``check(rows, family, precision, positions)``: the per-image ``(tag, probability)`` rows a path wrote for
    ``images[positions]`` at ``precision`` are the reduced tagger's own (to the path tolerance), moved from fp32's,
    and agree with fp32's at F1 >= MIN_F1 off the knife edge."""

    def check(rows, family: str, precision: str, positions: Sequence[int], *, merged: bool = False) -> None:
        """``merged``: the path merges tags by name (generation), in its own order: so is the reduced tagger's
        answer (Tag2Text's tag list repeats a few names)."""
        reduced, reference = tagger_of(family, precision), tagger_of(family, "fp32")
        assert reduced.precision == _resolved(precision) != "fp32"
        chosen = [images[i] for i in positions]
        rows, want = [list(row) for row in rows], reduced.predict(chosen)
        if merged:
            want = [list({name: max(p for n, p in row if n == name) for name, _ in row}.items()) for row in want]
        assert_same_tags(rows, want, thresholds=reduced.thresholds, names=reduced.tag_list, ordered=not merged,
                         **path_tolerance(reduced.precision))
        assert _largest_move(rows, reference.predict(chosen)) > MOVED, "the path ran fp32"
        margin = path_tolerance(reduced.precision)["margin"]
        f1, counted = _off_edge_f1(rows, reference, fp32_probabilities(family)[list(positions)], margin)
        assert counted >= 5 * len(positions), f"only {counted} tags off the knife edge: the check says nothing"
        assert f1 >= MIN_F1, f"{family} {precision}: tag-set F1 {f1:.4f} against fp32 ({counted} tags)"

    return check


# -- load_tagger: tags, probabilities, embeddings, captions ---------------------------------------------------


@pytest.mark.parametrize("precision", _variants())
@pytest.mark.parametrize("family", FAMILIES)
def test_tagger_tags_embeddings_and_captions(family, precision, tagger_of, images, fp32_probabilities,
                                             check_against_fp32, path_tolerance, assert_same_tags):
    tagger, reference = tagger_of(family, precision), tagger_of(family, "fp32")
    assert tagger.precision == _resolved(precision) and tagger.spec.precision == tagger.precision
    probabilities = tagger.probabilities(images)
    assert probabilities.dtype == np.float32 and probabilities.shape == fp32_probabilities(family).shape
    # predict, one image at a time: the same tags as the batch's probabilities decided (another batch shape)
    one_by_one = [row for image in images for row in tagger.predict([image])]
    decided = tagger.decide(probabilities, tagger.class_indices(None))
    assert_same_tags(one_by_one, decided, thresholds=tagger.thresholds, names=tagger.tag_list,
                     **path_tolerance(tagger.precision))
    check_against_fp32(_rows(one_by_one), family, precision, range(len(images)))

    embeddings, want = tagger.embed(images), reference.embed(images)
    assert embeddings.dtype == np.float32 and embeddings.shape == want.shape and np.isfinite(embeddings).all()
    cosine = (embeddings * want).sum(1) / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.99 and np.abs(embeddings - want).max() > MOVED

    if family == "tag2text":
        captions = tagger.caption(images[:2])
        assert len(captions) == 2 and all(isinstance(c, str) and c.strip() for c in captions)
        (batch,) = tagger.iter_batches(images[:2], caption=True)  # tags and captions in one pass
        assert batch.captions == captions


def test_auto_is_what_this_cpu_runs_fast(tagger_of):
    """The suite's default is ``auto``: on this CPU it resolves as hardware.py says, and a reduced precision."""
    from fiftyone_ram.hardware import default_precision

    assert default_precision() == "auto", "the suite must run at the default precision (FIFTYONE_RAM_PRECISION set)"
    assert tagger_of("ram", "auto").precision == _auto()


# -- open-set vocabularies (RAM, RAM++) ------------------------------------------------------------------------


@pytest.mark.parametrize("precision", _variants())
@pytest.mark.parametrize("family", ["ram", "ram_plus"])
def test_open_set_tags_at_reduced_precision(family, precision, tiny_tagger, tiny_clip_text_dir, clip_templates,
                                            images, path_tolerance, assert_same_tags):
    vocabulary = dict(tags=OPEN_SET, text_encoder=str(tiny_clip_text_dir()), templates=list(clip_templates))
    reference = tiny_tagger(family, precision="fp32", **vocabulary)
    tagger = tiny_tagger(family, precision=precision, **vocabulary)
    assert tagger.precision == _resolved(precision) and tagger.tag_list == OPEN_SET
    assert tagger.spec.precision == tagger.precision and tagger.spec.vocabulary is not None  # Ray actors reload it
    got, want = tagger.probabilities(images), reference.probabilities(images)
    tolerance = path_tolerance(tagger.precision)
    assert np.abs(got - want).max() <= tolerance["atol"] and np.abs(got - want).max() > MOVED
    # the built-in tags answer as in the whole vocabulary at this precision (new queries do not disturb them)
    whole = tiny_tagger(family, precision=precision)
    np.testing.assert_allclose(got[:, :2], whole.probabilities(images, tags=OPEN_SET[:2]), rtol=0,
                               atol=tolerance["atol"])
    # decided at one threshold the tiny scores reach (the median fp32 score), so that tags fall on both sides
    threshold = float(np.median(want))
    assert 0 < (want > threshold).mean() < 1
    assert_same_tags(tagger.predict(images, threshold=threshold), reference.predict(images, threshold=threshold),
                     thresholds=threshold, names=OPEN_SET, probabilities=want, **tolerance)


# -- the FiftyOne model and the tagging driver ------------------------------------------------------------------


@pytest.fixture()
def three(images):
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=path) for path in images[:3]])
    yield dataset
    dataset.delete()


def _stored(dataset, field: str) -> list[list[tuple[str, float]]]:
    return [[(c.label, c.confidence) for c in value.classifications] for value in dataset.values(field)]


@pytest.mark.parametrize("precision", _variants())
@pytest.mark.parametrize("family", FAMILIES)
def test_apply_model_embeddings_and_the_driver(family, precision, three, tiny_model_settings, tagger_of,
                                               check_against_fp32, path_tolerance):
    import fiftyone_ram.fiftyone as forf
    from fiftyone_ram.driver import runs, tag_samples

    options = {} if precision == "auto" else {"precision": precision}  # auto: nothing given, as users do
    model = forf.load_model(**tiny_model_settings(family, **options))
    assert model.tagger.precision == _resolved(precision)
    three.apply_model(model, label_field="applied", batch_size=2, num_workers=0)
    check_against_fp32(_stored(three, "applied"), family, precision, range(3))

    three.compute_embeddings(model, embeddings_field="embedding", batch_size=2, num_workers=0)
    direct = tagger_of(family, precision).embed(three.values("filepath"))
    np.testing.assert_allclose(np.stack(three.values("embedding")), direct, rtol=0,
                               atol=path_tolerance(model.tagger.precision)["atol"])

    summary = tag_samples(three, model, "driven", batch_size=2, num_workers=0, progress=False)
    assert summary.tagged == 3 and summary.problem is None
    check_against_fp32(_stored(three, "driven"), family, precision, range(3))
    record = runs.load(three, "tag", "driven")
    assert record.status == runs.COMPLETED and record.settings["precision"]["value"] == _resolved(precision)
    if family == "tag2text":
        for field in ("applied", "driven"):
            captions = three.values(f"{field}.caption")
            assert len(captions) == 3 and all(isinstance(c, str) and c.strip() for c in captions)


# -- generation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", _variants())
@pytest.mark.parametrize("family", FAMILIES)
def test_generation_tags_and_captions(family, precision, three, tagger_of, caption_parser, check_against_fp32):
    """A tagger's predicted tags and a Tag2Text captioner's captions (Tag2Text: one model for both, its backbone
    run once per image)."""
    from fiftyone_ram.engine.generation import GenerateJob

    tagger = tagger_of(family, precision)
    captioner = tagger if family == "tag2text" else tagger_of("tag2text", precision)
    summary = GenerateJob(out_field="generated", batch_size=2).run(three, tagger, captioner, caption_parser)
    values = three.values("generated")
    predicted = [[(c.label, c.confidence) for c in v.classifications if "predicted" in c.sources] for v in values]
    check_against_fp32(predicted, family, precision, range(3), merged=True)
    captions = [v["caption"] for v in values]
    assert all(isinstance(c, str) and c.strip() for c in captions)
    assert captions == captioner.caption(three.values("filepath"))
    assert summary.produced["captioned"] > 0 and summary.produced["predicted"] >= sum(map(len, predicted)) > 0


# -- cleaning's tagger pass over crops ---------------------------------------------------------------------------


def _attribute(label, name: str):
    return label[name] if label.has_field(name) else None


def _verdicts(dataset) -> dict[tuple[str, str], tuple[float | None, bool]]:
    """Per (file, tag) checked on its crops: the tagger's highest probability there (None: no region) and whether
    it was flagged as not predicted on them."""
    out = {}
    for path, value in zip(*dataset.values(["filepath", "gt_review"])):
        for label in value.classifications:
            if _attribute(label, "checked"):
                out[path.rsplit("/", 1)[-1], label.label] = (_attribute(label, "crop_probability"),
                                                            "not_predicted" in (_attribute(label, "flag_reasons") or []))
    return out


@pytest.fixture(scope="module")
def cleaned_fp32(tmp_path_factory, cleaning_dataset, tagger_of):
    """``cleaned_fp32(family)``: the fp32 cleaning's verdicts (the reference), one run per family."""
    from fiftyone_ram.engine.cleaning import CleanJob

    cache = {}

    def get(family: str):
        if family not in cache:
            dataset, _ = cleaning_dataset(tmp_path_factory.mktemp(f"clean-{family}"), per_category=2)
            CleanJob(tag_field="gt", regions_field="objects", embedder="ram", region_check=True).run(
                dataset, tagger_of(family, "fp32"))
            cache[family] = _verdicts(dataset)
            dataset.delete()
        return cache[family]

    return get


@pytest.mark.parametrize("precision", _variants())
@pytest.mark.parametrize("family", FAMILIES)
def test_cleaning_checks_crops_at_reduced_precision(family, precision, tmp_path, cleaning_dataset, tagger_of,
                                                    cleaned_fp32, path_tolerance):
    """The RAM embedder and the region check: the tagger embeds and scores every crop at the precision asked."""
    from fiftyone_ram.engine.cleaning import CleanJob

    tagger = tagger_of(family, precision)
    dataset, _ = cleaning_dataset(tmp_path, per_category=2)
    try:
        summary = CleanJob(tag_field="gt", regions_field="objects", embedder="ram", region_check=True).run(
            dataset, tagger)
        got, want = _verdicts(dataset), cleaned_fp32(family)
    finally:
        dataset.delete()
    assert summary.tags_checked == len(want) and set(got) == set(want)
    scored = [key for key, (p, _) in want.items() if p is not None]
    assert len(scored) >= 10
    assert max(abs(got[key][0] - want[key][0]) for key in scored) > MOVED, "the crops were scored in fp32"
    margin = path_tolerance(tagger.precision)["margin"]
    index = tagger.class_indices([key[1] for key in scored])
    off_edge = [(key, c) for key, c in zip(scored, index) if abs(want[key][0] - tagger.thresholds[c]) > margin]
    assert off_edge and sum(want[key][1] for key, _ in off_edge) > 0  # flags to agree on
    for key, _ in off_edge:  # the same verdict wherever fp32's crop score is off the knife edge
        assert got[key][1] == want[key][1], (key, got[key], want[key])


# -- fine-tuning's validation --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_dataset):
    dataset, tag_file = shapes_dataset(tmp_path_factory.mktemp("shapes"), train=4, validation=4)
    yield dataset, tag_file
    dataset.delete()


def _finetune_model(family: str, parity_dir, upstream_dir, tag_file, text_encoder, templates) -> dict:
    """The tiny checkpoint; RAM and RAM++ answer the four shape tags (``zigzag`` embedded by the tiny CLIP)."""
    if family == "tag2text":
        return dict(model=parity_dir / "fixtures_tiny.json", checkpoint=parity_dir / "tag2text_tiny.pth",
                    family=family, tag_list=upstream_dir / "tag2text_ori_tag_list.txt")
    return dict(model=parity_dir / "fixtures_tiny.json", checkpoint=parity_dir / f"{family}_tiny.pth", family=family,
                tag_list=upstream_dir / "ram_tag_list.txt", thresholds=upstream_dir / "ram_tag_list_threshold.txt",
                tags=str(tag_file), text_encoder=str(text_encoder), templates=list(templates))


@pytest.mark.parametrize("precision", _variants(None))
@pytest.mark.parametrize("family", FAMILIES)
def test_finetune_validates_at_the_precision_it_will_tag_at(family, precision, shapes, tmp_path, parity_dir,
                                                            upstream_dir, tiny_clip_text_dir, clip_templates):
    """Validation tags the view with the weights being trained at the validation precision (default: the
    tagging default, auto), a copy sharing them: the logged mAP is what the written folder gives when loaded at
    that precision, and training goes on in fp32."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.evaluation.run import evaluate_tags
    from fiftyone_ram.fiftyone import from_tagger
    from fiftyone_ram.training import finetune

    dataset, tag_file = shapes
    expected = _resolved(precision or "auto")
    out = tmp_path / "model"
    options = {} if precision is None else {"validation_precision": precision}
    model = _finetune_model(family, parity_dir, upstream_dir, tag_file, tiny_clip_text_dir(), clip_templates)
    view = dataset.match_tags("validation")
    result = finetune(dataset.match_tags("train"), out, **model, tag_field="gt", validation=view, teacher=None,
                      device="cpu", progress=False, messages=lambda _: None, epochs=1, batch_size=4, max_steps=1,
                      baseline=False, rand_augment=False, **options)
    assert result.tagger.precision == "fp32"
    assert {p.dtype for p in result.tagger.model.parameters()} == {torch.float32}  # the copy left them alone
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (validation,) = [r for r in log if r["type"] == "validation"]
    assert validation["precision"] == expected and validation["mAP"] is not None

    tagger = load_tagger(out, device="cpu", precision=expected)
    try:
        view.apply_model(from_tagger(tagger), label_field="again", batch_size=8, num_workers=0, store_logits=True)
        again = evaluate_tags(view, "again", "gt", model_tags=tagger)
    finally:
        dataset.delete_sample_field("again")
    assert again.summary["mAP"] == pytest.approx(validation["mAP"], abs=1e-6)


def test_at_precision_shares_the_weights_and_leaves_them_alone(tiny_tagger, tagger_of, images, assert_scores_close,
                                                               path_tolerance):
    """``Tagger.at_precision``: what fine-tuning validates with; the same scores as a tagger loaded at that
    precision, and the fp32 tagger it came from unchanged."""
    tagger = tiny_tagger("ram_plus", precision="fp32")
    before = tagger.probabilities(images)
    for precision in REDUCED:
        reduced = tagger.at_precision(precision)
        assert reduced.precision == precision and reduced.model is not tagger.model
        loaded = tagger_of("ram_plus", precision)
        np.testing.assert_allclose(reduced.probabilities(images), loaded.probabilities(images), rtol=0,
                                   atol=path_tolerance(precision)["atol"])
        if precision == "bf16":  # the reduced weights are its own
            assert reduced.model.visual_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
        assert reduced.model.label_embed.data_ptr() == tagger.model.label_embed.data_ptr()  # shared, not copied
    assert {p.dtype for p in tagger.model.parameters()} == {torch.float32}
    assert_scores_close(tagger.probabilities(images), before)
    assert tagger.at_precision("fp32") is tagger


# -- the Ray actors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("family", FAMILIES)
def test_what_ray_actors_load_is_at_the_precision_asked(family, precision, tiny_model_settings, tagger_of, images,
                                                        check_against_fp32, path_tolerance):
    """What a Ray actor receives and loads again, done here (an actor per family and precision costs a process
    each; the real actors run below): the driver's pickled model and the engine's portable tagger."""
    import pickle

    import fiftyone_ram.fiftyone as forf
    from fiftyone_ram.engine.ray_passes import tagger_spec

    model = forf.load_model(**tiny_model_settings(family, precision=precision))
    assert model.tagger.precision == precision  # loaded here, as in the driver; the pickle carries its settings
    shipped = pickle.loads(pickle.dumps(model))
    assert shipped.tagger is not model.tagger and shipped.tagger.precision == precision
    check_against_fp32(_rows(shipped.tagger.predict(images[:3])), family, precision, range(3))
    predictor = pickle.loads(pickle.dumps(model.ray_predictor()))  # what the tagging actor runs
    assert predictor.tagger is None and predictor.load() is not model.tagger and predictor.tagger.precision == precision
    loaded = tagger_spec(tagger_of(family, precision)).load("cpu")
    assert loaded.precision == precision
    np.testing.assert_allclose(loaded.probabilities(images[:2]), tagger_of(family, precision).probabilities(images[:2]),
                               rtol=0, atol=path_tolerance(precision)["atol"])


@pytest.mark.slow
def test_ray_actors_tag_caption_generate_and_clean_at_reduced_precision(ray_cluster, three, tmp_path, cleaning_dataset,
                                                                        tagger_of, caption_parser, tiny_model_settings,
                                                                        check_against_fp32, cleaned_fp32,
                                                                        path_tolerance):
    """Real Ray actors at a forced reduced precision (int8: never this CPU's ``auto``, and the one whose
    calibration must travel): the driver's tagging with Tag2Text captions, generation's tagger and captioner and
    cleaning's crop pass; the same results as here."""
    import fiftyone_ram.fiftyone as forf
    from fiftyone_ram.driver import runs, tag_samples
    from fiftyone_ram.engine.cleaning import CleanJob
    from fiftyone_ram.engine.generation import GenerateJob

    precision = "int8"
    model = forf.load_model(**tiny_model_settings("tag2text", precision=precision))
    summary = tag_samples(three, model, "on_ray_tags", batch_size=2, executor="ray", workers=1, progress=False)
    assert summary.tagged == 3 and summary.problem is None
    check_against_fp32(_stored(three, "on_ray_tags"), "tag2text", precision, range(3))
    assert runs.load(three, "tag", "on_ray_tags").settings["precision"]["value"] == precision
    assert all(isinstance(c, str) and c.strip() for c in three.values("on_ray_tags.caption"))

    tagger, captioner = tagger_of("ram", precision), tagger_of("tag2text", precision)
    GenerateJob(out_field="on_ray", batch_size=2, executor="ray", workers=1).run(three, tagger, captioner,
                                                                                 caption_parser)
    values = three.values("on_ray")
    check_against_fp32([[(c.label, c.confidence) for c in v.classifications if "predicted" in c.sources]
                        for v in values], "ram", precision, range(3), merged=True)
    assert [v["caption"] for v in values] == captioner.caption(three.values("filepath"))

    dataset, _ = cleaning_dataset(tmp_path, per_category=2)
    try:
        job = dict(tag_field="gt", regions_field="objects", embedder="ram", region_check=True)
        CleanJob(**job).run(dataset, tagger)
        here = _verdicts(dataset)
        CleanJob(**job, overwrite=True, executor="ray", workers=1).run(dataset, tagger)
        on_ray = _verdicts(dataset)
    finally:
        dataset.delete()
    want = cleaned_fp32("ram")
    assert set(on_ray) == set(here) == set(want)
    scored = [key for key, (p, _) in here.items() if p is not None]
    atol = path_tolerance(precision)["atol"]
    assert all(abs(on_ray[k][0] - here[k][0]) <= atol and on_ray[k][1] == here[k][1] for k in scored)
    assert max(abs(on_ray[k][0] - want[k][0]) for k in scored) > MOVED
