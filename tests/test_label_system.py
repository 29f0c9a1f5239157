"""Label systems from the real upstream lists: ids, names, synonyms, Chinese names, thresholds, one file; the
WordNet and curated synonyms; a new label system built from captions."""

from __future__ import annotations

import json

import pytest

from fiftyone_ram.labels.label_system import LabelSystem
from fiftyone_ram.labels.synonyms import curated_synonyms, with_caption_synonyms, wordnet_synonyms
from fiftyone_ram.labels.vocabulary_builder import build_label_system
from fiftyone_ram.labels.wordnet import load_wordnet


@pytest.fixture(scope="module")
def ram(upstream_dir) -> LabelSystem:
    return LabelSystem.from_upstream(
        "ram",
        tag_list=upstream_dir / "ram_tag_list.txt",
        chinese=upstream_dir / "ram_tag_list_chinese.txt",
        thresholds=upstream_dir / "ram_tag_list_threshold.txt",
    )


@pytest.fixture(scope="module")
def ram_wordnet_links(ram):
    return {link.word: link for link in wordnet_synonyms(ram, load_wordnet())}


def test_ram_ids_names_chinese_and_thresholds(ram):
    assert len(ram) == 4585 and ram.title == "ram"
    assert ram.names[4] == "monastery" and ram.id_of("monastery") == 4
    assert ram.id_of("Eiffel Tower") == ram.id_of("eiffel tower") == ram.names.index("Eiffel tower")
    assert ram.chinese_of(ram.id_of("abacus")) == "算盘"  # upstream keeps a trailing space; names are stripped
    assert ram.threshold_of(ram.id_of("nebula")) == 0.45
    assert sorted(ram.names[i] for i, t in enumerate(ram.thresholds) if t == 1.0) == sorted(
        ["body", "cocktail table", "French", "group", "lie", "show", "see", "set", "stop", "use"]
    )
    assert ram.ids_of("no such tag") == () and "no such tag" not in ram
    with pytest.raises(KeyError, match="not a tag"):
        ram.id_of("no such tag")


def test_tag2text_keeps_ids_of_repeated_names(upstream_dir):
    t2t = LabelSystem.from_upstream("tag2text", tag_list=upstream_dir / "tag2text_ori_tag_list.txt")
    assert len(t2t) == 3429 and len(set(t2t.names)) == 3313
    trains = t2t.ids_of("train")
    assert len(trains) == 2 and all(t2t.names[i] == "train" for i in trains)
    assert t2t.threshold_of(t2t.id_of("person")) == 0.7 and t2t.threshold_of(t2t.id_of("tennis")) == 0.68
    with pytest.raises(ValueError, match="unknown label system"):
        LabelSystem.from_upstream("clip", tag_list=upstream_dir / "ram_tag_list.txt")


def test_synonyms_share_an_id_and_never_take_over_a_name(ram):
    labels = ram.with_synonyms({"sofa": "couch", "Settee": "couch", "bed": "couch"})
    couch = ram.id_of("couch")
    assert labels.ids_of("SOFA") == labels.ids_of("settee") == (couch,)
    assert labels.ids_of("bed") == (ram.id_of("bed"),)  # "bed" is a tag's own name
    assert labels.names_of(couch) == ("couch", "sofa", "settee")
    assert labels.synonym_groups() == {couch: ("couch", "sofa", "settee")}
    assert not labels.is_tag_name("sofa") and labels.is_tag_name("couch")
    assert len(labels) == len(ram) and ram.ids_of("sofa") == ()  # the original is unchanged


def test_saved_and_loaded_as_one_file(ram, tmp_path):
    labels = ram.with_synonyms({"sofa": "couch", "ocean": "sea"})
    path = labels.save(tmp_path / "ram.json")
    assert [p.name for p in tmp_path.iterdir()] == ["ram.json"]
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "fiftyone-ram/label-system" and len(data["tags"]) == 4585
    loaded = LabelSystem.load(path)
    assert loaded == labels
    assert loaded.ids_of("ocean") == (ram.id_of("sea"),) and loaded.chinese == ram.chinese
    assert LabelSystem.from_file(path) == labels
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else", "tags": []}))
    with pytest.raises(ValueError, match="not a label system file"):
        LabelSystem.load(tmp_path / "other.json")


def test_user_tag_list_with_synonyms(tmp_path):
    path = tmp_path / "my_tags.txt"
    path.write_text("bicycle | bike | push bike\n\ncar|automobile\n  dog  \n", encoding="utf-8")
    labels = LabelSystem.from_file(path)
    assert labels.names == ("bicycle", "car", "dog") and labels.title == "my_tags"
    assert labels.ids_of("push bike") == (0,) and labels.id_of("Automobile") == 1
    assert labels.chinese is None and labels.threshold_of(2) is None


def test_wordnet_synonyms_stay_unambiguous_inside_the_vocabulary(ram, ram_wordnet_links):
    links = ram_wordnet_links
    expected = {
        "sofa": "couch",
        "kid": "child",
        "airplane": "plane",
        "teddy bear": "teddy",
        "automobile": "car",
        "photograph": "photo",
        "remote control": "remote",
        "coffee table": "cocktail table",
    }
    assert {w: ram.names[links[w].tag_id] for w in expected} == expected
    assert links["sofa"].source == "sofa.n.01"
    # not: a rare sense ("guy" is a "cat" in slang), ambiguous (bike: bicycle or motorcycle), mostly an
    # adjective ("three"), an inflected verb ("wearing" is WordNet's "erosion"), a plural of a tag ("cows"
    # are cow, not cattle), and every tag keeps its own name
    for word in ("guy", "bike", "three", "wearing", "eating", "cows", "ocean"):
        assert word not in links, (word, ram.names[links[word].tag_id])
    assert not any(ram.is_tag_name(word) for word in links)


def test_curated_merges_apply_only_when_their_target_is_a_tag(ram, ram_wordnet_links):
    curated = {link.word: ram.names[link.tag_id] for link in curated_synonyms(ram)}
    assert curated["people"] == "person" and curated["ocean"] == "sea" and curated["bike"] == "bicycle"
    assert "t shirt" not in curated  # RAM has its own "t shirt" tag
    small = LabelSystem(("person", "boat"))
    assert {link.word for link in curated_synonyms(small)} >= {"people", "ship"}
    assert "bike" not in {link.word for link in curated_synonyms(small)}
    labels = with_caption_synonyms(ram)
    assert labels.ids_of("young woman") == (ram.id_of("woman"),)  # WordNet would say "girl"
    assert ram_wordnet_links["young woman"].tag_id == ram.id_of("girl")


def test_building_a_label_system_from_captions():
    captions = [
        "a man sitting on a sofa",
        "a man sleeping on a couch",
        "people on a couch",
        "a person riding a horse",
        "two people riding horses on the beach",
        "a woman riding a horse",
        "a living room with no people and no cats",
        "a cat in a living room",
        ["a dog on a beach", "a dog running on the sand"],  # one image, two captions: counted once
        "a red car on a road",
        "an automobile on the road",
        "a car and a bus",
    ]
    report = build_label_system(captions, top_n=14, min_count=1)
    assert report.captions == 12
    counts = report.counts
    assert (counts["horse"], counts["ride"], counts["dog"], counts["road"]) == (3, 3, 1, 2)
    assert counts["people"] == 2 and counts["cat"] == 1  # negated mentions are not counted
    assert counts["living room"] == 2 and "living" not in counts and "riding horse" not in counts
    assert not {"two", "on", "a", "on the road"} & set(counts)
    assert report.kept[:4] == ("horse", "ride", "beach", "car") and report.kept[-1] == "person"
    merged = {m.name: (m.merged, m.reasons) for m in report.merges}
    assert merged == {"car": (("automobile",), ("car.n.01",)), "people": (("person",), ("curated",))}
    labels = report.label_system
    assert len(labels) == 12 and labels.ids_of("automobile") == labels.ids_of("car")
    assert "14 kept, merged into 12 ids" in report.summary() and "car (2) <- automobile (1)" in report.summary()
