"""The training objective equals upstream's: the losses of ../shared/fixtures/training, upstream's weight ties,
and the properties a held-out batch relies on (``benchmarks/training_objective_parity.py`` compares held-out
batches and gradients with upstream itself, where its interpreter is installed)."""

from __future__ import annotations

import pytest
import torch

from fiftyone_ram.training import total_loss, training_losses
from fiftyone_ram.training.objective import TrainingInputError

REL = 1e-4
FIXTURE_NAMES = {"loss_t2t": "caption", "loss_tag": "tag", "loss_dis": "distillation", "loss_alignment": "alignment"}


@pytest.fixture(scope="module")
def fixture(parity_dir):
    return torch.load(parity_dir.parent / "training" / "train_losses_tiny.pt", weights_only=True)


@pytest.fixture(scope="module", params=["ram", "ram_plus", "tag2text"])
def trainable(request, tiny_tagger):
    """(family, tagger with its captioning branch). Shared: read it, never change it."""
    return request.param, tiny_tagger(request.param, caption_branch=True, precision="fp32")


def _inputs(family: str, fixture: dict) -> dict:
    targets = fixture["models"][family]
    if family == "ram":
        return dict(captions=fixture["captions"], tag_targets=targets["image_tag"], parse_targets=targets["parse_tag"],
                    clip_image_features=fixture["clip_image_features"])
    if family == "ram_plus":
        return dict(tag_targets=targets["image_tag"], clip_image_features=fixture["clip_image_features"],
                    caption_text_embeds=fixture["caption_text_embeds"])
    return dict(captions=fixture["captions"], tag_targets=targets["tag"])


def test_losses_equal_upstreams_fixture(trainable, fixture):
    family, tagger = trainable
    losses = training_losses(tagger, fixture["pixel_values"], **_inputs(family, fixture))
    expected = {FIXTURE_NAMES[k]: float(v) for k, v in fixture["models"][family].items() if k in FIXTURE_NAMES}
    assert set(losses) == set(expected)
    for name, want in expected.items():
        assert abs(losses[name].item() - want) <= REL * abs(want), (family, name, losses[name].item(), want)


def test_losses_change_no_weight_and_keep_the_mode(trainable, fixture):
    family, tagger = trainable
    before = {k: v.clone() for k, v in tagger.model.state_dict().items()}
    assert not tagger.model.training
    with torch.no_grad():
        training_losses(tagger, fixture["pixel_values"][:2], **_first(_inputs(family, fixture), 2))
    assert not tagger.model.training
    after = tagger.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_train_mode_is_stochastic_and_eval_mode_is_not(tiny_tagger, fixture):
    """Dropout and stochastic depth act in train mode (as upstream's), never in eval mode."""
    tagger = tiny_tagger("ram", caption_branch=True, precision="fp32")
    inputs = _first(_inputs("ram", fixture), 2)
    pixels = fixture["pixel_values"][:2]
    torch.manual_seed(0)
    with torch.no_grad():
        eval_runs = [training_losses(tagger, pixels, **inputs) for _ in range(2)]
        tagger.model.train()
        train_runs = [training_losses(tagger, pixels, **inputs) for _ in range(2)]
    for name in eval_runs[0]:
        assert eval_runs[0][name].item() == eval_runs[1][name].item()
        assert train_runs[0][name].item() != train_runs[1][name].item(), name


@pytest.mark.slow
def test_tag_and_distillation_losses_decompose_over_images(trainable, fixture):
    """Held-out batches of any size and order: ASL is a sum over images, L1 a mean."""
    family, tagger = trainable
    inputs = _inputs(family, fixture)
    order = [3, 0, 4]
    whole = training_losses(tagger, fixture["pixel_values"][order], tag_targets=inputs["tag_targets"][order])
    parts = [training_losses(tagger, fixture["pixel_values"][[i]], tag_targets=inputs["tag_targets"][[i]])["tag"]
             for i in order]
    assert abs(whole["tag"].item() - sum(p.item() for p in parts)) <= REL * whole["tag"].item()
    if family != "tag2text":
        features = fixture["clip_image_features"]
        whole = training_losses(tagger, fixture["pixel_values"][order], clip_image_features=features[order])
        parts = [training_losses(tagger, fixture["pixel_values"][[i]], clip_image_features=features[[i]])
                 for i in order]
        mean = sum(p["distillation"].item() for p in parts) / len(parts)
        assert abs(whole["distillation"].item() - mean) <= REL * mean


def test_weights_are_tied_as_upstream(trainable):
    family, tagger = trainable
    model = tagger.model
    if family == "ram_plus":
        assert not model.has_caption_branch
        return
    for layer, head in zip(model.tag_encoder.encoder.layer, model.tagging_head.encoder.layer):
        assert layer.crossattention.self.query.weight is head.crossattention.self.query.weight
        assert layer.output.LayerNorm.bias is head.output.LayerNorm.bias
    predictions = model.text_decoder.cls.predictions
    assert predictions.decoder.weight is model.text_decoder.bert.embeddings.word_embeddings.weight
    assert predictions.decoder.bias is predictions.bias
    names = {n for n, _ in model.named_parameters()}
    assert "text_decoder.cls.predictions.decoder.weight" not in names  # the optimizer sees each tensor once


def test_total_weights_losses_as_upstream():
    losses = {"caption": torch.tensor(2.0), "tag": torch.tensor(300.0), "distillation": torch.tensor(0.5)}
    assert total_loss(losses, "ram").item() == pytest.approx(2.0 + 2.0 + 0.5)
    assert total_loss({"tag": torch.tensor(3.0), "alignment": torch.tensor(1.0)}, "ram_plus").item() == 4.0
    assert total_loss(losses, "ram", weights={"distillation": 0.0}).item() == pytest.approx(4.0)


def test_ram_loads_lean_unless_training_asks(tiny_tagger, fixture):
    tagger = tiny_tagger("ram", precision="fp32")
    assert not tagger.model.has_caption_branch
    with pytest.raises(TrainingInputError, match="caption_branch=True"):
        training_losses(tagger, fixture["pixel_values"][:1], **_first(_inputs("ram", fixture), 1))


def test_bad_inputs_are_one_clear_error(trainable, fixture):
    family, tagger = trainable
    with pytest.raises(TrainingInputError, match="tag-list order"):
        training_losses(tagger, fixture["pixel_values"][:2], tag_targets=torch.zeros(2, 7))
    if family == "tag2text":
        with pytest.raises(TrainingInputError, match="clip_image_features"):
            training_losses(tagger, fixture["pixel_values"][:1], clip_image_features=torch.zeros(1, 512))


def _first(inputs: dict, n: int) -> dict:
    return {k: v[:n] for k, v in inputs.items()}
