"""The driver stores exactly what FiftyOne's own ``apply_model`` stores: the same label documents, error strings
and schema, on real datasets with the tiny checkpoints (the driver runs our model itself, see
``fiftyone_ram.driver.local_executor``, and writes with ``set_values``)."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.core.labels as fol
import numpy as np
import pytest

import fiftyone_ram.driver as frd
import fiftyone_ram.fiftyone as forf
from fiftyone_ram.fiftyone.outputs import TagOutput


def _without_ids(document):
    """A document with its ``_id`` values left out (each label has a new one), as plain dicts and lists."""
    if isinstance(document, dict):
        return {key: _without_ids(value) for key, value in document.items() if key != "_id"}
    if isinstance(document, list):
        return [_without_ids(value) for value in document]
    return document


def test_a_tag_output_becomes_the_label_fiftyone_builds():
    output = TagOutput(["cat", "dog"], [0.7, 0.9], [0.65, 0.5], logits=np.array([1.5, -2.0], np.float32),
                       caption="a cat")
    made = output.to_label()
    made.validate()
    assert [(c.label, c.confidence, c["threshold"]) for c in made.classifications] == [
        ("cat", 0.7, 0.65), ("dog", 0.9, 0.5)]
    assert made["caption"] == "a cat" and np.array_equal(made.logits, output.logits)
    assert isinstance(made, fol.Classifications) and len({c.id for c in made.classifications}) == 2


def _stored(dataset, field):
    """The raw documents of ``field`` by file name, without the per-label ids."""
    docs = dataset._sample_collection.find({}, {"filepath": 1, field: 1, f"{field}_error": 1})
    return {d["filepath"].rsplit("/", 1)[-1]: (_without_ids(d.get(field)), d.get(f"{field}_error")) for d in docs}


@pytest.mark.parametrize("family,options", [
    ("ram", {}),
    pytest.param("ram", {"confidence_thresh": 0.3, "store_logits": True}, marks=pytest.mark.slow),
    pytest.param("tag2text", {}, marks=pytest.mark.slow),
], ids=["ram", "ram-threshold-logits", "tag2text-caption"])
def test_the_driver_stores_what_apply_model_stores(family, options, tiny_model_settings, copy_pngs, tmp_path):
    paths = copy_pngs(tmp_path / "images")
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not a png")
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in [*paths, broken]])
        model = forf.load_model(**tiny_model_settings(family))
        dataset.apply_model(model, label_field="by_fiftyone", batch_size=2, num_workers=0, **options)
        driver_options = {("threshold" if k == "confidence_thresh" else k): v for k, v in options.items()}
        summary = frd.tag_samples(dataset, model, "by_driver", batch_size=2, num_workers=0, **driver_options)
        assert summary.tagged == len(paths) and list(summary.failed) == [str(broken)]
        fiftyone_docs, driver_docs = _stored(dataset, "by_fiftyone"), _stored(dataset, "by_driver")
        assert driver_docs == fiftyone_docs
        assert fiftyone_docs["broken.png"][0] is None and "broken.png" in fiftyone_docs["broken.png"][1]
        tagged = [doc for doc, _ in driver_docs.values() if doc is not None]
        assert len(tagged) == len(paths) and all(doc["classifications"] for doc in tagged)
        if family == "tag2text":
            assert all(doc["caption"] for doc in tagged)
        if options.get("store_logits"):
            assert all("logits" in doc for doc in tagged)
        schema = {k: type(v) for k, v in dataset.get_field_schema(flat=True).items()}
        driver_schema = {k.replace("by_driver", "F"): v for k, v in schema.items() if k.startswith("by_driver")}
        if family == "tag2text":  # the driver also copies captions to a field the App's sidebar lists
            assert driver_schema.pop("F_caption") is fo.StringField
        assert {k.replace("by_fiftyone", "F"): v for k, v in schema.items() if k.startswith("by_fiftyone")} == \
               driver_schema
        sample = dataset.first()  # in-memory samples see what was written
        assert sample.by_driver.classifications[0].label == sample.by_fiftyone.classifications[0].label
    finally:
        dataset.delete()


def test_the_driver_runs_the_loaded_tagger_and_loads_no_other(tiny_model_settings, parity_pngs, monkeypatch):
    import fiftyone_ram.fiftyone.model as model_module

    model = forf.load_model(**tiny_model_settings("ram"))
    monkeypatch.setattr(model_module, "_load_tagger", lambda config: pytest.fail("a second tagger was loaded"))
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in parity_pngs[:2]])
        assert frd.tag_samples(dataset, model, "ram", threshold=0.4, store_logits=True).tagged == 2
        assert model.config.confidence_thresh is None and not model.store_logits  # the caller's model unchanged
    finally:
        dataset.delete()
