"""The FiftyOne Model on a real database: apply_model equals Tagger.predict, bad files are recorded,
other fields survive, embeddings, logits, thresholds, Tag2Text captions, pickling for workers."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")


@pytest.fixture(scope="module")
def model(tiny_model_settings):
    """Shared by the tests of this module: read it, never change it (``copy.copy`` it to change settings)."""
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    return forf.load_model(**tiny_model_settings(), device="cpu")


@pytest.fixture(scope="module")
def pngs(parity_pngs):
    return [str(p) for p in parity_pngs]


def test_apply_model_with_workers_equals_predict_exactly(model, pngs, stored_tags, assert_scores_close):
    """Same batches on both sides (5 images, batch 5) in one process: bit-identical tags and confidences."""
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in pngs])
    dataset.apply_model(model, label_field="ram", batch_size=5, num_workers=2, skip_failures=False)

    tagger = copy.copy(model.tagger)  # the shared model keeps its own batch size
    tagger.batch_size = 5
    expected = tagger.predict(pngs)
    assert [stored_tags(label) for label in dataset.values("ram")] == expected
    assert all(expected), "the fixture model predicts tags for every image"
    first = dataset.first().ram.classifications[0]
    index = tagger.tag_list.index(first.label)
    assert_scores_close(first.threshold, tagger.thresholds[index])  # the file's decimal against its float32
    assert "ram_error" not in dataset.get_field_schema()


def test_bad_files_are_recorded_and_everything_else_is_tagged_and_kept(model, pngs, bad_files, stored_tags,
                                                                       assert_same_tags):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    bad = bad_files
    files = [pngs[0], str(bad["zero_byte.jpg"]), *[str(p) for p in bad.odd.values()], pngs[3],
             *[str(p) for n, p in bad.unreadable.items() if n != "zero_byte.jpg"], pngs[4]]
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=f, notes=f"note {i}", tags=["keep"],
                                   ground_truth=fo.Classification(label="cat")) for i, f in enumerate(files)])

    summary = frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=2, skip_failures=False)

    unreadable = {str(p) for p in bad.unreadable.values()}
    readable = [f for f in files if f not in unreadable]
    assert set(summary.failed) == unreadable
    assert summary.tagged == len(readable) == 9 and summary.untagged == 0
    assert "could not be read" in str(summary)
    by_path = {s.filepath: s for s in dataset}
    expected = dict(zip(readable, model.tagger.predict(readable), strict=True))
    for i, path in enumerate(files):
        sample = by_path[path]
        assert sample.notes == f"note {i}" and sample.tags == ["keep"]
        assert sample.ground_truth.label == "cat"
        if path in unreadable:
            assert sample.ram is None
            assert path in sample.ram_error
        else:
            assert sample.ram_error is None
            assert_same_tags([stored_tags(sample.ram)], [expected[path]], names=model.tagger.tag_list,
                             thresholds=model.tagger.thresholds)


def test_plain_apply_model_records_unreadable_images_too(model, pngs, tmp_path):
    missing = str(tmp_path / "gone.png")
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=pngs[0]), fo.Sample(filepath=missing)])
    dataset.apply_model(model, label_field="tags_ram", batch_size=2, num_workers=0, skip_failures=False)
    first, second = dataset.values("tags_ram")
    assert first is not None and second is None
    assert dataset.values("tags_ram_error") == [None, f"image {missing} does not exist"]


def test_confidence_thresh_replaces_the_per_class_thresholds(model, pngs, stored_tags, assert_same_tags):
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in pngs[:2]])
    dataset.apply_model(model, label_field="ram", confidence_thresh=0.8, batch_size=2, num_workers=0)
    expected = model.tagger.predict(pngs[:2], threshold=0.8)
    assert_same_tags([stored_tags(label) for label in dataset.values("ram")], expected, thresholds=0.8)
    assert {c.threshold for label in dataset.values("ram") for c in label.classifications} == {0.8}
    assert expected != model.tagger.predict(pngs[:2])  # the number really changed the decision
    assert model.config.confidence_thresh is None  # apply_model restored the model's own setting


def test_logits_tag_subset_and_class_filter(pngs, tiny_model_settings, assert_scores_close):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    tagger_model = forf.load_model(**tiny_model_settings())
    subset = tagger_model.tagger.tag_list[:40]
    model = forf.load_model(**tiny_model_settings(classes=subset))
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in pngs[:2]])
    dataset.apply_model(model, label_field="ram", store_logits=True, batch_size=2, num_workers=0)
    pixels = model.tagger.preprocess(pngs[:2])
    logits, _ = model.tagger.forward(pixels, tags=subset)
    for label, row in zip(dataset.values("ram"), logits.numpy(), strict=True):
        assert len(label.logits) == 40
        assert_scores_close(label.logits, row)
        assert {c.label for c in label.classifications} <= set(subset)

    keep = [c.label for c in dataset.first().ram.classifications][:2]
    dataset.apply_model(model, label_field="filtered", classes=keep, batch_size=2, num_workers=0)
    assert {c.label for label in dataset.values("filtered") for c in label.classifications} <= set(keep)
    assert [c.label for c in dataset.first().filtered.classifications] == keep


def test_chinese_tag_names(pngs, upstream_dir, tiny_model_settings, stored_tags, assert_same_tags):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    model = forf.load_model(**tiny_model_settings(language="zh",
                                                  tag_list_chinese=str(upstream_dir / "ram_tag_list_chinese.txt")))
    label = model.predict(pngs[1])
    assert_same_tags([stored_tags(label)], model.tagger.predict([pngs[1]], language="zh"),
                     names=model.tagger.names("zh"), thresholds=model.tagger.thresholds)


def test_embeddings_similarity_and_visualization(model, pngs, tmp_path, assert_scores_close):
    import fiftyone.brain as fob

    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in pngs])
    dataset.compute_embeddings(model, embeddings_field="ram_embedding", batch_size=5, num_workers=0)
    embeddings = np.stack(dataset.values("ram_embedding"))
    assert_scores_close(embeddings, model.tagger.embed(pngs))  # batches of 5 there, of 4 and 1 here
    assert embeddings.shape == (5, model.tagger.embedding_dim)
    fob.compute_similarity(dataset, embeddings="ram_embedding", brain_key="ram_sim")
    nearest = dataset.sort_by_similarity(dataset.first().id, k=2, brain_key="ram_sim")
    assert nearest.first().id == dataset.first().id
    fob.compute_visualization(dataset, embeddings="ram_embedding", method="pca", brain_key="ram_viz")
    assert dataset.load_brain_results("ram_viz").points.shape == (5, 2)

    # An unreadable image fails its batch, as FiftyOne's own models do (FiftyOne then skips that batch and names
    # the file); batches of one lose only the unreadable images.
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "missing.png")))
    dataset.compute_embeddings(model, embeddings_field="with_bad", batch_size=3, num_workers=0)
    values = dataset.values("with_bad")
    assert values[3:] == [None, None, None] and all(v is not None for v in values[:3])
    dataset.compute_embeddings(model, embeddings_field="one_by_one", batch_size=1, num_workers=0)
    values = dataset.values("one_by_one")
    assert values[-1] is None and all(v is not None for v in values[:-1])
    assert_scores_close(np.stack(values[:-1]), embeddings)
    with pytest.raises(Exception, match="missing.png"):  # asked not to skip failures: an error, as FiftyOne's models
        dataset.compute_embeddings(model, embeddings_field="strict", batch_size=6, num_workers=0,
                                   skip_failures=False)


def test_tag2text_caption_is_stored_on_the_field(pngs, tiny_model_settings, stored_tags, assert_same_tags):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    model = forf.load_model(**tiny_model_settings("tag2text"))
    dataset = fo.Dataset()
    dataset.add_sample(fo.Sample(filepath=pngs[1]))
    dataset.apply_model(model, label_field="t2t", batch_size=1, num_workers=0, skip_failures=False)
    assert dataset.values("t2t.caption") == model.tagger.caption(pngs[1:2])  # one image: a batch of one on both
    assert_same_tags([stored_tags(label) for label in dataset.values("t2t")], model.tagger.predict(pngs[1:2]),
                     names=model.tagger.tag_list, thresholds=model.tagger.thresholds)
    model.config.caption = False
    assert not model.predict(pngs[1]).has_field("caption")


def test_pickles_for_workers_without_the_weights(model, pngs, stored_tags):
    get_item = pickle.loads(pickle.dumps(model.build_get_item()))
    assert get_item({"filepath": pngs[0]}).shape == (3, 224, 224)
    assert pickle.loads(pickle.dumps(model.collate_fn)) is type(model).collate_fn
    payload = pickle.dumps(model)
    assert len(payload) < 20_000  # configuration only: the weights are re-read from the checkpoint
    clone = pickle.loads(payload)
    assert stored_tags(clone.predict(pngs[2])) == stored_tags(model.predict(pngs[2]))


def test_the_config_is_serialisable_for_fiftyone_model_configs(pngs, tiny_model_settings, stored_tags):
    import fiftyone.core.models as fom

    model = fom.load_model({"type": "fiftyone_ram.fiftyone.model.RamModel", "config": tiny_model_settings()})
    assert type(model).__name__ == "RamModel" and model.config.family == "ram"
    again = fom.load_model({"type": "fiftyone_ram.fiftyone.model.RamModel", "config": model.config.serialize()})
    assert stored_tags(again.predict(pngs[0])) == stored_tags(model.predict(pngs[0]))


def test_predict_takes_paths_pil_images_and_arrays(model, pngs, stored_tags):
    from PIL import Image

    image = Image.open(pngs[0]).convert("RGB")
    by_path = stored_tags(model.predict(pngs[0]))
    assert stored_tags(model.predict(image)) == by_path
    assert stored_tags(model.predict(np.asarray(image))) == by_path
    assert model.predict("/nonexistent/file.png") == {"error": "image /nonexistent/file.png does not exist"}
