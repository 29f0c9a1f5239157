"""The remote zoo source, registered the way users do it (FiftyOne only takes URLs: a zip of ``zoo/`` is
served on 127.0.0.1), then loaded and applied with a tiny fixture checkpoint."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

fo = pytest.importorskip("fiftyone")
foz = pytest.importorskip("fiftyone.zoo")

NAMES = ("ram-plus-swin-large-14m", "ram-swin-large-14m", "tag2text-swin-14m", "recognize-anything-custom")


@pytest.fixture(scope="module")
def source_url(tmp_path_factory, repo_root):
    served = tmp_path_factory.mktemp("served")
    with zipfile.ZipFile(served / "fiftyone-ram-zoo.zip", "w") as archive:
        for path in (repo_root / "zoo").rglob("*"):
            if "__pycache__" not in path.parts:
                archive.write(path, Path("fiftyone-ram-main") / path.relative_to(repo_root / "zoo"))
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/fiftyone-ram-zoo.zip"
    foz.register_zoo_model_source(url)
    yield url
    foz.delete_zoo_model_source(url)
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_manifest_is_complete_and_truthful(repo_root):
    from fiftyone_ram.models.registry import default_cfgs

    manifest = json.loads((repo_root / "zoo" / "manifest.json").read_text())
    assert manifest["name"] == "fiftyone-ram/recognize-anything"
    models = {m["base_name"]: m for m in manifest["models"]}
    assert tuple(models) == NAMES
    for model in models.values():
        assert model["description"] and model["author"] and model["license"] == "Apache-2.0"
        assert {"classification", "logits", "embeddings", "torch"} <= set(model["tags"])
        assert "fiftyone-ram" in model["requirements"]["packages"]
    for name, cfg in default_cfgs.items():
        entry = models[name.replace("_", "-")]
        assert entry["base_filename"] == cfg.weights.filename
        if cfg.weights.size is not None:
            assert entry["size_bytes"] == cfg.weights.size
    assert (repo_root / "zoo" / models["recognize-anything-custom"]["base_filename"]).is_file()


def test_the_committed_manifest_is_the_generated_one(repo_root):
    """zoo/manifest.json is written from the registry: python -m fiftyone_ram.fiftyone.zoo zoo/manifest.json"""
    from fiftyone_ram.fiftyone.zoo import build_manifest

    assert json.loads((repo_root / "zoo" / "manifest.json").read_text()) == build_manifest()


def test_registered_source_lists_the_models(source_url):
    assert source_url in foz.list_zoo_model_sources()
    assert sorted(foz.list_zoo_models(source=source_url)) == sorted(NAMES)
    assert foz.list_zoo_models(source=source_url, tags="embeddings")
    # The custom entry has nothing to download; the released ones are not here.
    assert foz.is_zoo_model_downloaded("recognize-anything-custom")
    assert not foz.is_zoo_model_downloaded("ram-plus-swin-large-14m")


def test_load_zoo_model_with_a_checkpoint_and_apply_it(source_url, tmp_path, tiny_model_settings, copy_pngs, stored_tags,
                                                       assert_same_tags):
    import fiftyone_ram.fiftyone as forf

    settings = tiny_model_settings()
    model = foz.load_zoo_model("recognize-anything-custom", checkpoint_path=settings["checkpoint_path"],
                               config=settings["config"], family="ram", tag_list=settings["tag_list"],
                               thresholds=settings["thresholds"], device="cpu")
    assert isinstance(model, forf.RamModel)
    pngs = [str(p) for p in copy_pngs(tmp_path / "images")]
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in pngs])
    dataset.apply_model(model, label_field="ram", batch_size=5, num_workers=0, skip_failures=False)
    assert_same_tags([stored_tags(label) for label in dataset.values("ram")], model.tagger.predict(pngs),
                     names=model.tagger.tag_list, thresholds=model.tagger.thresholds)



def test_load_zoo_model_with_a_model_folder(source_url, tmp_path, tiny_tagger, parity_pngs, assert_same_tags):
    """A model folder (fine-tuning's output) is the whole model: no config, family or tag list needed."""
    import numpy as np

    from fiftyone_ram.model_folder import write_model_folder
    from fiftyone_ram.models.checkpoint import upstream_state_dict

    tagger = tiny_tagger("ram")
    thresholds = np.full(len(tagger.tag_list), 0.7, np.float32)
    write_model_folder(tmp_path / "folder", upstream_state_dict(tagger.model), tagger.config.to_dict(),
                       tagger.tag_list, thresholds)
    model = foz.load_zoo_model("recognize-anything-custom", checkpoint_path=str(tmp_path / "folder"), device="cpu")
    assert model.tagger.family == "ram" and model.tagger.tag_list == tagger.tag_list
    np.testing.assert_array_equal(model.tagger.thresholds, thresholds)
    images = [str(p) for p in parity_pngs]
    assert_same_tags(model.tagger.predict(images), tagger.predict(images, threshold=0.7), thresholds=0.7)

def test_a_released_name_uses_its_downloaded_weights(source_url, parity_dir, tiny_model_settings):
    """With the weights file in place (here: the tiny checkpoint), ``load_model`` takes it from the zoo."""
    zoo_model = foz.get_zoo_model("ram-swin-large-14m")
    weights = Path(zoo_model.get_path_in_dir(fo.config.model_zoo_dir))
    shutil.copyfile(parity_dir / "ram_tiny.pth", weights)
    try:
        settings = tiny_model_settings()
        model = foz.load_zoo_model("ram-swin-large-14m", config=settings["config"], tag_list=settings["tag_list"],
                                   thresholds=settings["thresholds"], threshold=0.8, device="cpu")
        assert model.config.checkpoint_path == str(weights)
        assert model.config.model == "ram_swin_large_14m" and model.tagger.family == "ram"
        assert model.config.confidence_thresh == 0.8
    finally:
        weights.unlink()


def test_a_failed_download_says_how_to_use_your_own_checkpoint(source_url, monkeypatch):
    from fiftyone_ram import assets

    def offline(name, **_):
        raise assets.AssetError(f"could not download {name}")

    monkeypatch.setattr(assets, "download_weights", offline)  # never fetch gigabytes from a test
    with pytest.raises(assets.AssetError, match="recognize-anything-custom"):
        foz.download_zoo_model("tag2text-swin-14m")
    assert not foz.is_zoo_model_downloaded("tag2text-swin-14m")


def test_app_form_and_parameter_parsing(source_url, tmp_path):
    from fiftyone.operators.executor import ExecutionContext

    dataset = fo.Dataset()
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {
        "remote_params": {"threshold_mode": "global"}}})
    released = foz.get_zoo_model("ram-plus-swin-large-14m").resolve_input(ctx)
    fields = set(released.type.properties)
    assert {"threshold_mode", "threshold", "language", "classes", "device", "checkpoint_path"} <= fields
    assert "thresholds" not in fields  # a single number was chosen
    custom = foz.get_zoo_model("recognize-anything-custom").resolve_input(ctx)
    assert {"family", "checkpoint_path", "config", "tag_list"} <= set(custom.type.properties)
    tag2text = foz.get_zoo_model("tag2text-swin-14m").resolve_input(ctx)
    assert "caption" in tag2text.type.properties and "language" not in tag2text.type.properties

    params = {"threshold_mode": "global", "threshold": 0.7, "thresholds": "", "classes": ["dog", "cat"],
              "device": "auto", "language": "en", "checkpoint_path": None}
    foz.get_zoo_model("ram-plus-swin-large-14m").parse_parameters(ctx, params)
    assert params == {"confidence_thresh": 0.7, "classes": ["dog", "cat"], "language": "en"}
