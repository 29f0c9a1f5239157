"""Tag generation on a real FiftyOne database: existing tags of several field kinds, caption fields, the tiny
RAM's predictions and the tiny Tag2Text's captions merged with their provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
THRESHOLD = 0.8


@pytest.fixture()
def dataset(tmp_path, parity_pngs):
    import fiftyone as fo

    samples = []
    for i, path in enumerate(parity_pngs[:3]):
        samples.append(fo.Sample(
            filepath=str(path), tags=["Dog"] if i == 0 else [],
            gt=fo.Classifications(classifications=[fo.Classification(label="dog"), fo.Classification(label="man")]),
            objects=fo.Detections(detections=[fo.Detection(label="horse", bounding_box=[0.1, 0.1, 0.2, 0.2])]),
            caption=["a man riding a horse on the beach", "a dog in the snow", None][i]))
    samples.append(fo.Sample(filepath=str(tmp_path / "missing.png"), caption="a cat"))
    ds = fo.Dataset()
    ds.add_samples(samples)
    yield ds
    ds.delete()


def _by_label(value) -> dict[str, object]:
    return {c.label: c for c in value.classifications}


def test_all_sources_are_merged_with_provenance(dataset, parity_pngs, ram_never_car, tiny_tag2text, caption_parser,
                                                assert_same_tags):
    from fiftyone_ram.engine.generation import generate_tags

    before = dataset.values("gt")
    tagger, captioner, parser = ram_never_car, tiny_tag2text, caption_parser
    summary = generate_tags(dataset, "generated", tag_fields=["gt", "objects", "tags"], caption_fields=["caption"],
                            tagger=tagger, captioner=captioner, parser=parser, threshold=THRESHOLD)
    assert dataset.values("gt") == before  # inputs are read, never written
    values = dataset.values("generated")
    predicted = tagger.predict([str(p) for p in parity_pngs[:3]], threshold=THRESHOLD)

    first = _by_label(values[0])
    assert first["dog"].sources[0] == "original" and first["dog"].source == "original"
    assert "parsed" not in first["dog"].sources  # "a man riding a horse" says nothing of dogs
    assert first["man"].sources[:2] == ["original", "parsed"] and first["man"].confidence is None
    assert first["horse"].sources[:2] == ["original", "parsed"]  # from the Detections field and the caption
    assert first["beach"].source == "parsed"
    assert "Dog" not in first  # the sample tag "Dog" is the same tag as "dog" (names are normalised)
    # The predicted tags, each with its probability (tags within 1e-5 of the threshold may differ).
    assert_same_tags([[(c.label, c.confidence) for c in v.classifications if "predicted" in c.sources]
                      for v in values[:3]], predicted, thresholds=THRESHOLD, ordered=False)
    for i, value in enumerate(values[:3]):
        labels = _by_label(value)
        caption = value["caption"]
        assert caption == captioner.caption([str(parity_pngs[i])])[0]
        assert {n for n, c in labels.items() if "captioned" in c.sources} == set(parser.tags(caption))
        for label in value.classifications:
            assert label.source == label.sources[0]
            assert (label.confidence is not None) == ("predicted" in label.sources)
    assert {c.label for c in values[1].classifications} >= {"dog", "snow", "man", "horse"}

    # The unreadable image keeps what needs no pixels: its parsed caption.
    assert [(c.label, c.sources) for c in values[3].classifications] == [("cat", ["parsed"])]
    assert list(summary.unreadable) == [str(Path(dataset.values("filepath")[3]))]

    # The summary counts what each source added, as stored.
    stored = {s: sum(c.source == s for v in values for c in v.classifications) for s in summary.added}
    assert summary.added == stored and summary.total == sum(len(v.classifications) for v in values)
    assert summary.added["predicted"] > 0 and summary.added["captioned"] > 0
    assert summary.produced["original"] == 3 * 3 + 1 and "-> 'generated'" in str(summary)


def test_existing_field_needs_overwrite_and_sources_are_required(dataset, ram_never_car):
    from fiftyone_ram.engine.generation import generate_tags

    generate_tags(dataset, "generated", tag_fields=["gt"])
    with pytest.raises(ValueError, match="overwrite"):
        generate_tags(dataset, "generated", tag_fields=["gt"])
    summary = generate_tags(dataset.limit(2), "generated", tag_fields=["objects"], overwrite=True)
    assert summary.samples == 2 and [c.label for c in dataset.first()["generated"].classifications] == ["horse"]
    with pytest.raises(ValueError, match="at least one source"):
        generate_tags(dataset, "other")
    with pytest.raises(ValueError, match="Tag2Text"):
        generate_tags(dataset, "other", captioner=ram_never_car)
