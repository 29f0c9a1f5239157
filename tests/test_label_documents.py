"""The cheap label paths store exactly what FiftyOne's own would.

``TagOutput.to_label`` copies a template instead of running mongoengine's constructor, ``to_document`` builds
the stored document without label objects, and the tagging driver writes those documents itself instead of
going through ``apply_model``. Each is compared here with FiftyOne's own construction and storage, on real
datasets, with the tiny checkpoints.
"""

from __future__ import annotations

import pickle

import fiftyone as fo
import fiftyone.core.labels as fol
import numpy as np
import pytest

import fiftyone_ram.fiftyone as forf

import fiftyone_ram.driver as frd
from fiftyone_ram.fiftyone import outputs
from fiftyone_ram.fiftyone.outputs import TagOutput, _without_ids


def _reference(output: TagOutput) -> fol.Classifications:
    label = fol.Classifications(classifications=[
        fol.Classification(label=name, confidence=confidence, threshold=threshold)
        for name, confidence, threshold in zip(output.labels, output.confidences, output.thresholds)],
        logits=output.logits)
    if output.caption is not None:
        label["caption"] = output.caption
    return label


CASES = [
    TagOutput(["dog", "grass"], [0.93, 0.61], [0.8, 0.6]),
    TagOutput([], [], []),
    TagOutput(["cat"], [0.7], [0.65], logits=np.array([1.5, -2.0, 0.25], dtype=np.float32), caption="a cat"),
]


@pytest.mark.parametrize("output", CASES, ids=["tags", "none", "logits-caption"])
def test_copied_labels_and_documents_equal_what_fiftyone_builds(output):
    made, reference = output.to_label(), _reference(output)
    assert outputs._MAKER._ready(), "the fast construction did not pass its check on this FiftyOne"
    want = _without_ids(reference.to_mongo())
    assert _without_ids(made.to_mongo()) == want
    assert _without_ids(output.to_document()) == want
    made.validate()
    ids = [c.id for c in made.classifications]
    assert len(set(ids)) == len(ids)  # each label its own id
    assert _without_ids(pickle.loads(pickle.dumps(made)).to_mongo()) == want  # Ray and DataLoaders pickle
    if made.classifications:
        made.classifications[0]["reviewed"] = True  # a user's attribute stays on that label
        again = output.to_label()
        assert "reviewed" not in again.classifications[0].to_dict() and again.classifications[0].threshold


def test_the_constructor_is_used_when_the_copy_fails_its_check(monkeypatch):
    maker = outputs._LabelMaker()
    monkeypatch.setattr(maker, "_check", lambda: False)
    monkeypatch.setattr(outputs, "_MAKER", maker)
    output = CASES[2]
    assert _without_ids(output.to_label().to_mongo()) == _without_ids(_reference(output).to_mongo())
    assert _without_ids(output.to_document()) == _without_ids(_reference(output).to_mongo())
    assert maker._checked is False


def _stored(dataset, field):
    """The raw documents of ``field`` by file name, without the per-label ids."""
    docs = dataset._sample_collection.find({}, {"filepath": 1, field: 1, f"{field}_error": 1})
    return {d["filepath"].rsplit("/", 1)[-1]: (_without_ids(d.get(field)), d.get(f"{field}_error")) for d in docs}


@pytest.mark.parametrize("family,options", [
    ("ram", {}),
    ("ram", {"confidence_thresh": 0.3, "store_logits": True}),
    ("tag2text", {}),
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
        summary = frd.tag_samples(dataset, model, "by_driver", batch_size=2, num_workers=0, **options)
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
        assert frd.tag_samples(dataset, model, "ram", confidence_thresh=0.4, store_logits=True).tagged == 2
        assert model.config.confidence_thresh is None and not model.store_logits  # the caller's model unchanged
    finally:
        dataset.delete()
