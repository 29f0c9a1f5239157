"""Caption parsing rules, each checked with RAM's real tag list and WordNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fiftyone_ram.labels.caption_parser import CaptionParser, load_parser
from fiftyone_ram.labels.caption_text import negated_positions, tokenize
from fiftyone_ram.labels.label_system import LabelSystem

GOLD = Path(__file__).parent / "data" / "captions_gold.jsonl"


@pytest.fixture(scope="module")
def parser(upstream_dir) -> CaptionParser:
    return load_parser(upstream_dir / "ram_tag_list.txt")


def tags(parser: CaptionParser, caption) -> list[str]:
    return parser.tags(caption)


def test_tokens_without_punkt():
    assert tokenize("A man's T-shirt, isn't it?") == ["a", "man", "t", "-", "shirt", ",", "is", "n't", "it", "?"]
    assert tokenize("Two dogs\u2019 bowls") == ["two", "dogs", "'", "bowls"]


def test_multi_word_tags_longest_first(parser):
    assert tags(parser, "a living room with a tv") == ["living room", "television"]
    assert tags(parser, "a red fire hydrant") == ["red", "hydrant"]  # "fire hydrant" is RAM's "hydrant"
    assert tags(parser, "a man in a t-shirt") == ["man", "t-shirt"]
    assert tags(parser, "a man in a t shirt") == ["man", "t shirt"]  # RAM has both spellings as tags
    assert tags(parser, "a tshirt and a close up of a hot dog") == ["t-shirt", "close-up", "hot dog"]
    assert tags(parser, "two hot dogs in a living rooms") == ["hot dog", "living room"]
    assert tags(parser, "salt and pepper shakers on a table") == ["salt and pepper shakers", "table"]
    assert tags(parser, "a man riding a skate board") == ["man", "riding", "skateboard"]


def test_lemmatised_plurals_and_verb_forms(parser):
    assert tags(parser, "dogs and men") == ["dog", "man"]
    assert tags(parser, "a man running with children") == ["man", "run", "child"]
    assert tags(parser, "two men playing tennis") == ["man", "play tennis"]
    assert tags(parser, "a boy swinging a bat") == ["boy", "swing", "bat"]  # not the rarer lemma "swinge"
    # the exact surface form wins when it is a tag
    assert tags(parser, "a pair of glasses") == ["glasses"]
    assert tags(parser, "a man standing and sitting") == ["man", "standing", "sitting"]
    # an "-ed" participle is not the action, and a clearly-noun tag does not come from a verb form
    assert tags(parser, "a parked car") == ["car"]
    assert tags(parser, "a man facing the camera") == ["man", "camera"]


def test_synonyms_map_to_one_id(parser):
    labels = parser.label_system
    assert tags(parser, "people on a sofa near the ocean") == ["person", "couch", "sea"]
    assert tags(parser, "kids with a puppy and a bike") == ["child", "dog", "bicycle"]
    assert parser.parse("a sofa") == parser.parse("a couch") == [labels.id_of("couch")]
    assert tags(parser, "a young woman and a lady") == ["woman"]


def test_hyphen_and_possessive_forms(parser):
    assert tags(parser, "a woman's hat on a dog's head") == ["woman", "hat", "dog", "head"]
    assert tags(parser, "a close-up of a snow-covered tree") == ["close-up", "snow", "tree"]
    assert tags(parser, "an ice-cream cone") == tags(parser, "an ice cream cone") == ["ice cream cone"]


def test_negated_phrases_give_no_tags(parser):
    assert tags(parser, "a kitchen with no people in it") == ["kitchen"]
    assert tags(parser, "a man without a hat on a beach") == ["man", "beach"]
    assert tags(parser, "a man not wearing a shirt in a park") == ["man", "park"]
    assert tags(parser, "there are no clouds in the sky") == ["sky"]
    assert tags(parser, "none of the people are in the room") == ["room"]
    assert tags(parser, "nobody is on the beach") == ["beach"]
    assert tags(parser, "no one is in the kitchen") == ["kitchen"]
    assert tags(parser, "a street with no cars or people and a tall building") == ["building"]
    assert tags(parser, "a room with nothing but a bed") == ["room", "bed"]
    assert tags(parser, "a plate that does not have any food on it") == ["plate"]
    assert tags(parser, "a woman without shoes walking on the sand") == ["woman", "walking", "sand"]
    assert tags(parser, "a no parking sign") == ["parking sign"]  # "no" after an article names the sign
    tokens = tokenize("no people, a dog")
    assert negated_positions(tokens) == [True, True, False, False, False]


def test_function_words_quantifiers_and_verb_readings(parser):
    assert tags(parser, "a man holding up a ball in the back of a truck") == ["man", "ball", "truck"]
    assert tags(parser, "a man picks up a ball") == ["man", "pick up", "ball"]  # a RAM tag
    assert tags(parser, "a group of people and a couple of dogs") == ["person", "dog"]
    assert tags(parser, "a couple sitting together") == ["couple", "sitting"]
    assert tags(parser, "a table with glasses of wine") == ["table", "wine"]
    assert tags(parser, "a cat drinking water") == ["cat", "drink", "water"]
    assert tags(parser, "a bottle of drinking water") == ["bottle", "drinking water"]


def test_captions_of_one_image_are_united(parser):
    captions = ["a dog on a beach", "a brown dog running on the sand", "no people on the beach"]
    assert tags(parser, captions) == ["dog", "beach", "brown", "run", "sand"]
    assert parser.parse_many(["a cat", ["a dog", "a cat"]]) == [
        [parser.label_system.id_of("cat")],
        [parser.label_system.id_of("dog"), parser.label_system.id_of("cat")],
    ]
    assert parser.parse("") == [] and parser.parse([]) == []


def test_matches_report_negated_occurrences(parser):
    matches = parser.matches("a dog without a leash")
    assert [(m.start, m.end, m.negated) for m in matches] == [(1, 2, False), (4, 5, True)]
    assert matches[1].ids == (parser.label_system.id_of("leash"),)


def test_a_user_label_system_with_synonyms_and_repeated_names():
    labels = LabelSystem(("train", "train", "station", "dog"), (("railway train",), (), ("depot",), ("pup",)))
    parser = CaptionParser(labels)
    assert parser.parse("a railway train at the depot") == [0, 2]
    assert parser.parse("trains and pups") == [0, 1, 3]  # a repeated name marks both ids
    assert CaptionParser(labels, ignored_tags=("dog",)).parse("a dog") == []


def test_gold_captions_precision_and_recall(parser):
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150
    true_positive = false_positive = false_negative = 0
    for row in rows:
        found, expected = set(parser.tags(row["caption"])), set(row["tags"])
        true_positive += len(found & expected)
        false_positive += len(found - expected)
        false_negative += len(expected - found)
    precision = true_positive / (true_positive + false_positive)
    recall = true_positive / (true_positive + false_negative)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)
