"""Synonyms that stay inside a vocabulary: WordNet links and a short list of curated everyday merges.

WordNet rule (:class:`SenseIndex`). Each tag *uses* the first (most frequent) noun sense of its name; a
synset used by several tags belongs to the one whose name it is most often used for in WordNet's
sense-tagged corpus ("child" over "fry" for the sense child/kid/fry), and to all of them on a tie. A word
that is not a tag name becomes a synonym of tag ``t`` when

1. the tags that its noun synsets belong to are exactly ``{t}`` (unambiguous);
2. its own first noun sense is one of those synsets (the link is what the word usually means);
3. it is not mainly an adjective (its adjective senses are not more frequent than its noun senses);
4. it is not an inflection: "wearing" is not the tag "erosion" (WordNet's noun "wearing") but the verb
   "wear", and "cows" is the tag "cow", not "cattle"; the parser's lemmatisation handles those.

So "sofa" -> couch and "kid" -> child, while "guy" does not become "cat" (the slang sense is not how "cat"
is used), "bike" maps nowhere (bicycle and motorcycle) and "three" does not become "trio". Only nouns are
linked: WordNet's verb synsets are broad ("avow" shares one with "swan"), and caption verbs reach verb tags
through lemmatisation. A tag's own name is never taken over by a synonym.

WordNet misses merges that matter in everyday captions ("people" -> person, "ocean" -> sea, "bike" ->
bicycle) and has a few that mislead there ("young woman" -> girl); :data:`EVERYDAY_SYNONYMS` and
:data:`NOT_SYNONYMS` correct them, as the RAM authors merged tags by hand. A curated merge applies only when
its target is a tag of the label system.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fiftyone_ram.labels.label_system import LabelSystem, normalize_name
from fiftyone_ram.labels.wordnet import exact_synsets, sense_count, sense_frequencies

# Curated merges for everyday captions: word or phrase -> tag name (English tags of RAM's system).
EVERYDAY_SYNONYMS: dict[str, str] = {
    # people
    "people": "person",
    "young woman": "woman",  # WordNet: girl
    "young man": "man",
    "someone": "person",
    "somebody": "person",
    "guy": "man",
    "gentleman": "man",
    "fellow": "man",
    "lady": "woman",
    "kid": "child",
    "youngster": "child",
    # animals
    "kitten": "cat",
    "kitty": "cat",
    "puppy": "dog",
    "pup": "dog",
    "doggy": "dog",
    "doggie": "dog",
    # vehicles
    "bike": "bicycle",
    "push bike": "bicycle",
    "airplane": "plane",
    "aeroplane": "plane",
    "jetliner": "airliner",
    "ship": "boat",
    "cab": "taxi",
    "double decker": "decker bus",
    "double decker bus": "decker bus",
    "stroller": "baby carriage",
    # things at home
    "cell phone": "phone",
    "cellphone": "phone",
    "mobile phone": "phone",
    "cellular phone": "phone",
    "smart phone": "smartphone",
    "refrigerator": "fridge",
    "tv": "television",
    "sofa": "couch",
    "bathtub": "tub",
    "countertop": "counter top",
    "hair dryer": "hair drier",
    "suitcase": "luggage",
    "teddy bear": "teddy",
    "tshirt": "t-shirt",
    "tee shirt": "t-shirt",
    "t shirt": "t-shirt",
    "sneaker": "shoe",
    "purse": "handbag",
    "racquet": "racket",
    "tennis racquet": "tennis racket",
    # food
    "doughnut": "donut",
    "hotdog": "hot dog",
    "burger": "hamburger",
    "fries": "French fries",
    # sport, places and nature
    "soccer": "football",
    "ocean": "sea",
    "sidewalk": "pavement",
    "fire hydrant": "hydrant",
    "watering hole": "pond",
    "seagull": "gull",
    # spelling
    "grey": "gray",
    "colour": "color",
}


# WordNet links that are wrong for everyday captions; these phrases are parsed word by word instead.
NOT_SYNONYMS = frozenset({"home plate", "hard hat", "large number", "great deal", "good deal", "quite a little"})


@dataclass(frozen=True)
class SynonymLink:
    """One added name and why: the WordNet synset that links it, or ``"curated"``."""

    word: str
    tag_id: int
    source: str


class SenseIndex:
    """Which vocabulary entries use which WordNet synsets, and the linking rule of this module."""

    def __init__(self, vocabulary: Sequence[Iterable[str]], wordnet) -> None:
        """``vocabulary[i]`` holds the names of entry ``i``; entry ``i`` uses each name's first noun sense."""
        frequencies = sense_frequencies(wordnet)
        self.wordnet = wordnet
        # synset name -> {entry: how often the entry's name is used in that synset}
        self.users: dict[str, dict[int, int]] = {}
        for i, names in enumerate(vocabulary):
            for name in names:
                synsets = exact_synsets(wordnet, name, "n", case_sensitive=name.islower())
                if synsets:
                    key = name.replace(" ", "_").lower()
                    count = sum(
                        frequencies.get(lemma.key(), 0)
                        for lemma in synsets[0].lemmas()
                        if lemma.name().lower() == key
                    )
                    users = self.users.setdefault(synsets[0].name(), {})
                    users[i] = max(users.get(i, 0), count)

    def owners(self, synset_name: str, exclude: int | None = None) -> set[int]:
        """The entries a synset leads to: its one user, or the user whose name it mostly means.

        "child", "kid" and "fry" share a synset; "child" is used in it 148 times and "fry" never, so the
        synset leads to "child" alone. Users with equal counts all stay (an ambiguity).
        """
        users = {i: n for i, n in self.users.get(synset_name, {}).items() if i != exclude}
        top = max(users.values(), default=0)
        return {i for i, n in users.items() if n == top}

    def candidate_words(self) -> set[str]:
        """Every common-noun lemma of a used synset: the only words the rule can link."""
        words = set()
        for synset_name in self.users:
            for lemma in self.wordnet.synset(synset_name).lemmas():
                if lemma.name().islower() or not any(c.isalpha() for c in lemma.name()):
                    words.add(normalize_name(lemma.name().replace("_", " ")))
        return words

    def link(self, word: str, exclude: int | None = None) -> tuple[int, str] | None:
        """The entry ``word`` is a synonym of, with the linking synset's name; None when not unambiguous.

        ``exclude`` drops one entry from consideration (the word's own, when the word is in the vocabulary).
        """
        synsets = exact_synsets(self.wordnet, word, "n")
        targets = set()
        for synset in synsets:
            targets |= self.owners(synset.name(), exclude)
        if len(targets) != 1:
            return None
        (target,) = targets
        first = synsets[0].name()
        if target not in self.owners(first, exclude):
            return None
        if sense_count(self.wordnet, word, "a") > sense_count(self.wordnet, word, "n"):
            return None
        return target, first


def wordnet_synonyms(label_system: LabelSystem, wordnet=None) -> list[SynonymLink]:
    """WordNet synonyms of the label system's tags by the rule in this module's docstring."""
    if wordnet is None:
        from fiftyone_ram.labels.wordnet import load_wordnet

        wordnet = load_wordnet()
    index = SenseIndex([label_system.names_of(i) for i in range(len(label_system))], wordnet)
    links = []
    for word in sorted(index.candidate_words()):
        if (
            word in label_system
            or word in NOT_SYNONYMS
            or _is_verb_form(wordnet, word)
            or _inflects_a_tag(wordnet, word, label_system)
        ):
            continue
        found = index.link(word)
        if found is not None:
            links.append(SynonymLink(word, found[0], found[1]))
    return links


def _is_verb_form(wordnet, word: str) -> bool:
    """Inflected verbs ("wearing", "eating", "works") name the action in captions, not the noun WordNet lists
    them under ("erosion", "feeding", plant); the parser reaches the verb through lemmatisation instead."""
    return any(lemma != word for lemma in wordnet._morphy(word, "v"))


def _inflects_a_tag(wordnet, word: str, label_system: LabelSystem) -> bool:
    """A plural of a tag's name is that tag ("cows" -> cow), not a tag WordNet lists it under (cattle)."""
    return any(lemma != word and label_system.is_tag_name(lemma) for lemma in wordnet._morphy(word, "n"))


def curated_synonyms(label_system: LabelSystem) -> list[SynonymLink]:
    """The :data:`EVERYDAY_SYNONYMS` whose target is a tag of this label system and whose word is not."""
    links = []
    for word, target in EVERYDAY_SYNONYMS.items():
        if label_system.is_tag_name(word) or not label_system.is_tag_name(target):
            continue
        links.append(SynonymLink(word, label_system.id_of(target), "curated"))
    return links


def with_caption_synonyms(label_system: LabelSystem, wordnet=None) -> LabelSystem:
    """The label system with the curated merges and the WordNet synonyms added (curated ones first)."""
    synonyms: dict[str, int] = {}
    for link in curated_synonyms(label_system) + wordnet_synonyms(label_system, wordnet):
        synonyms.setdefault(link.word, link.tag_id)
    return label_system.with_synonyms(synonyms)
