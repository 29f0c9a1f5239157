"""Ground-truth names onto model tags: exact, normalised, synonyms, user files, label systems, leftovers."""

from __future__ import annotations

import json

import pytest

from fiftyone_ram.evaluation.mapping import NameMapper, load_mapping
from fiftyone_ram.labels.label_system import LabelSystem

MODEL = ["car", "person", "glasses", "glass", "berry", "T-shirt", "traffic light", "shoe", "bus", "television"]


def test_exact_then_case_separator_and_plural_normalisation():
    m = NameMapper(MODEL)
    got = {n: (m.resolve(n).tag, m.resolve(n).how) for n in
           ["car", "Cars", "people", "glass", "Glasses", "berries", "t shirt", "Traffic_Lights", "shoes", "buses"]}
    assert got == {
        "car": ("car", "exact"), "Cars": ("car", "normalized"), "people": ("person", "normalized"),
        "glass": ("glass", "exact"), "Glasses": ("glasses", "normalized"), "berries": ("berry", "normalized"),
        "t shirt": ("T-shirt", "normalized"), "Traffic_Lights": ("traffic light", "normalized"),
        "shoes": ("shoe", "normalized"), "buses": ("bus", "normalized"),
    }
    assert NameMapper(MODEL, normalize=False).resolve("Cars").how == "unmapped"


def test_synonyms_user_files_and_precedence(tmp_path):
    as_json = tmp_path / "map.json"
    as_json.write_text(json.dumps({"tv monitor": "television", "Person": "car", "dog": ""}))
    as_csv = tmp_path / "map.csv"
    as_csv.write_text("gt_name,model_name\ntv monitor,television\nPerson,car\ndog,\n")
    as_tsv = tmp_path / "map.tsv"
    as_tsv.write_text("tv monitor\ttelevision\nPerson\tcar\ndog\t\n")
    expected = {"tv monitor": "television", "Person": "car", "dog": None}
    for path in (as_json, as_csv, as_tsv):
        assert load_mapping(path) == expected
        m = NameMapper(MODEL, mapping=path, synonyms={"automobile": "car", "tee": "T-shirt"})
        assert m.resolve("tv monitor").tag == "television" and m.resolve("tv monitor").how == "user"
        assert m.resolve("person").tag == "car"  # the user's mapping wins over the exact tag, case-insensitively
        assert m.resolve("dog").how == "ignored" and m.resolve("dog").tag is None
        assert (m.resolve("Automobiles").tag, m.resolve("Automobiles").how) == ("car", "synonym")
        assert m.resolve("tee").tag == "T-shirt"
    with pytest.raises(ValueError, match="line 1"):
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b,c\n")
        load_mapping(bad)


def test_label_system_is_used_without_being_imported_by_the_mapper():
    system = LabelSystem(names=("car", "person", "sofa"), synonyms=(("automobile",), ("human",), ("couch",)))
    m = NameMapper(["car", "person", "sofa"], label_system=system)
    assert (m.resolve("Couch").tag, m.resolve("Couch").how) == ("sofa", "label_system")
    assert m.resolve("human").tag == "person"
    assert m.resolve("zebra").how == "unmapped"
    # any callable works too
    assert NameMapper(["sofa"], label_system=lambda n: {"settee": "sofa"}[n]).resolve("settee").tag == "sofa"


def test_report_lists_what_could_not_be_mapped_and_merges():
    m = NameMapper(MODEL, synonyms={"automobile": "car"})
    report = m.report({"car": 5, "automobile": 2, "zebra": 3, "unicorn": 1})
    assert report.unmapped() == ["unicorn", "zebra"]
    assert report.merged() == {"car": ["automobile", "car"]}
    assert report.to_dict()["counts"]["zebra"] == 3


def test_unknown_model_vocabulary_keeps_names_and_matches_observed_tags():
    m = NameMapper(None, observed_tags=["car", "dog"])
    assert (m.resolve("cars").tag, m.resolve("cars").how) == ("car", "normalized")
    assert (m.resolve("zebra").tag, m.resolve("zebra").how) == ("zebra", "kept")
    assert m.report({"zebra": 1}).unmapped() == []
