"""Captions to tag ids of a label system, as RAM's training data was made (tags parsed from image captions).

Matching, left to right, longest first:

1. a multi-word name (up to the longest name, four words in RAM's list) whose words are the caption's words,
   as written or lemmatised ("hot dogs" -> hot dog, "playing tennis" -> play tennis); hyphens are optional
   ("close up" -> close-up, "tshirt" -> t-shirt, "ice-cream cone" -> ice cream cone) but an exact spelling
   wins (RAM has both "t-shirt" and "t shirt"); a name starting with an "-ing" word is not matched right
   after a plain noun, where that word is the noun's verb ("a cat drinking water" is drink + water, "a glass
   of drinking water" is not);
2. two words written apart that form a one-word name ("skate board" -> skateboard);
3. one word: as written if it is a name ("glasses", "standing"), else its noun lemma ("dogs" -> dog, "men" ->
   man), else its verb lemma ("running" -> run) unless the tag is clearly a noun in WordNet's frequencies
   (so "facing" does not give "face", nor "heading" "head").

Names include the label system's synonyms (see :mod:`fiftyone_ram.labels.synonyms`). Matches that start in a
negated phrase are dropped (scope rule in :mod:`fiftyone_ram.labels.caption_text`). Tags that are function
words in captions ("up", "out", "back", "side", "set", ...) never match, nor does a collective noun used as a
quantifier ("a group of people" gives person, not group).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fiftyone_ram.labels.caption_text import (
    HYPHEN,
    Lemmatizer,
    WordForms,
    is_word,
    negated_positions,
    tokenize,
)
from fiftyone_ram.labels.label_system import LabelSystem
from fiftyone_ram.labels.wordnet import sense_count

# Tag names that, in captions, are nearly always particles, light verbs or numbers rather than content.
FUNCTION_WORD_TAGS = frozenset(
    {"up", "out", "back", "side", "go", "make", "take", "use", "see", "show", "set", "get", "type", "well", "five"}
)
# Nouns that quantify when followed by "of" ("a couple of dogs", "a number of cars").
QUANTIFIERS = frozenset(
    {
        "couple", "group", "pair", "bunch", "lot", "lots", "number", "variety", "set", "kind", "type", "sort",
        "piece", "few", "handful", "dozen", "range", "selection", "assortment", "array", "plenty", "ton",
        "tons", "load", "loads", "series", "mix", "collection", "bit",
        "glasses",  # "glasses of wine" are not the eyewear tag "glasses"
    }
)
_MIN_JOINED_PART = 3  # "skate board" -> skateboard, but "is land" stays apart


@dataclass(frozen=True)
class TagMatch:
    """One tag found in a caption: token span ``[start, end)``, the ids, and whether it is negated."""

    start: int
    end: int
    ids: tuple[int, ...]
    negated: bool


@dataclass(frozen=True)
class _Word:
    """What matching needs to know about one token, computed once per distinct token."""

    token: str
    spellings: tuple[str, ...]  # as written, then its lemmas
    ids: tuple[int, ...]  # the one-word tag it is, if any
    # multi-word names it may start: (remaining words, ids, whether it starts as written), longest first
    starts: tuple[tuple[tuple[str, ...], tuple[int, ...], bool], ...]
    quantifier: bool  # a quantifying noun, when "of" follows
    joinable: bool  # may form a one-word name with the next word


class CaptionParser:
    """Parses captions into tag ids of one label system; build once, parse many (thousands per second)."""

    def __init__(
        self,
        label_system: LabelSystem,
        wordnet=None,
        *,
        ignored_tags: Iterable[str] = FUNCTION_WORD_TAGS,
    ) -> None:
        if wordnet is None:
            from fiftyone_ram.labels.wordnet import load_wordnet

            wordnet = load_wordnet()
        self.label_system = label_system
        self._wordnet = wordnet
        self._lemmatizer = Lemmatizer(wordnet)
        ignored = {name.lower() for name in ignored_tags}
        self._single: dict[str, tuple[int, ...]] = {}
        # first word -> {remaining words: ids}
        self._multi: dict[str, dict[tuple[str, ...], tuple[int, ...]]] = {}
        names = [(name, ids) for name, ids in label_system.all_names().items() if name not in ignored]
        # Exact spellings first, so that "t-shirt" and "t shirt" (two RAM tags) each keep their own.
        own = [(n, ids) for n, ids in names if label_system.is_tag_name(n)]
        synonyms = [(n, ids) for n, ids in names if not label_system.is_tag_name(n)]
        for variant in (False, True):
            for name, ids in own + synonyms:
                keys = _keys(name)
                for key in keys[1:] if variant else keys[:1]:
                    if len(key) == 1:
                        self._single.setdefault(key[0], ids)
                    else:
                        self._multi.setdefault(key[0], {}).setdefault(key[1:], ids)
        self._words: dict[str, _Word] = {}
        self._verb_like: dict[int, bool] = {}

    # -- public API -----------------------------------------------------------------------------------------

    def parse(self, captions: str | Iterable[str]) -> list[int]:
        """Tag ids of one caption, or of all captions of one image (their union), in order of appearance."""
        if isinstance(captions, str):
            captions = (captions,)
        found: dict[int, None] = {}
        for caption in captions:
            for _, _, ids, negated in self._scan(caption):
                if not negated:
                    found.update(dict.fromkeys(ids))
        return list(found)

    def tags(self, captions: str | Iterable[str]) -> list[str]:
        """Tag names of :meth:`parse`."""
        names = self.label_system.names
        return [names[i] for i in self.parse(captions)]

    def parse_many(self, captions: Sequence[str | Iterable[str]]) -> list[list[int]]:
        """:meth:`parse` for each image."""
        return [self.parse(c) for c in captions]

    def matches(self, caption: str) -> list[TagMatch]:
        """Every tag occurrence in the caption, negated ones included (for inspection and tests)."""
        return [TagMatch(*found) for found in self._scan(caption)]

    # -- matching -------------------------------------------------------------------------------------------

    def _scan(self, caption: str) -> list[tuple[int, int, tuple[int, ...], bool]]:
        tokens = tokenize(caption)
        negated = negated_positions(tokens)
        words = [self._words.get(t) or self._word(t) for t in tokens]
        found, i, n = [], 0, len(tokens)
        while i < n:
            match = self._match_at(tokens, words, i)
            if match is None:
                i += 1
            else:
                found.append((i, match[0], match[1], negated[i]))
                i = match[0]
        return found

    def _match_at(self, tokens: list[str], words: list[_Word], i: int) -> tuple[int, tuple[int, ...]] | None:
        word = words[i]
        if word.starts:
            # "a cat drinking water": after a plain noun an "-ing" word is its verb, not a compound's start
            verb_reading = word.token.endswith("ing") and i > 0 and self._lemmatizer.is_plain_noun(tokens[i - 1])
            best = None
            for rest, ids, as_written in word.starts:
                if as_written and verb_reading:
                    continue
                end = _follows(rest, tokens, words, i + 1)
                if end and (best is None or end > best[0]):
                    best = (end, ids)
            if best is not None:
                return best
        if word.joinable and i + 1 < len(tokens) and words[i + 1].joinable:
            ids = self._single.get(word.token + tokens[i + 1])
            if ids:
                return i + 2, ids
        if not word.ids or (word.quantifier and tokens[i + 1 : i + 2] == ["of"]):
            return None
        return i + 1, word.ids

    def _word(self, token: str) -> _Word:
        forms = self._lemmatizer.forms(token)
        spellings = (forms.surface, *forms.nouns, *forms.verbs)
        starts = []
        if is_word(token):
            for spelling in dict.fromkeys(spellings):
                for rest, ids in self._multi.get(spelling, {}).items():
                    starts.append((rest, ids, spelling == token))
        starts.sort(key=lambda start: -len(start[0]))
        word = _Word(
            token=token,
            spellings=spellings,
            ids=self._lookup_word(forms) if is_word(token) else (),
            starts=tuple(starts),
            quantifier=not QUANTIFIERS.isdisjoint(spellings),
            joinable=len(token) >= _MIN_JOINED_PART and token.isalpha(),
        )
        self._words[token] = word
        return word

    def _lookup_word(self, word: WordForms) -> tuple[int, ...]:
        ids = self._single.get(word.surface)
        if ids:
            return ids
        for lemma in word.nouns:
            ids = self._single.get(lemma)
            if ids:
                return ids
        for lemma in word.verbs:
            ids = tuple(i for i in self._single.get(lemma, ()) if self._is_verb_like(i))
            if ids:
                return ids
        return ()

    def _is_verb_like(self, tag_id: int) -> bool:
        """Whether the tag may come from a verb form: its name is not clearly a noun in WordNet's frequencies
        (a noun use seen at least 3 times and more than twice as often as a verb use)."""
        found = self._verb_like.get(tag_id)
        if found is None:
            name = self.label_system.names[tag_id]
            noun = sense_count(self._wordnet, name, "n")
            found = self._verb_like[tag_id] = noun < 3 or noun <= 2 * sense_count(self._wordnet, name, "v")
        return found


def load_parser(tag_list: Path | str | None = None) -> CaptionParser:
    """A parser for RAM's label system (or a tag list / saved label system file) with the curated and WordNet
    synonyms; kept per file, since building one takes seconds and the App runs operators in one process."""
    if tag_list is None:
        return _cached_parser(None, 0)
    path = Path(tag_list).resolve()
    return _cached_parser(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached_parser(path: str | None, mtime_ns: int) -> CaptionParser:
    from fiftyone_ram.labels.synonyms import with_caption_synonyms

    labels = LabelSystem.from_upstream("ram", extras=False) if path is None else LabelSystem.from_file(path)
    return CaptionParser(with_caption_synonyms(labels))


def _follows(rest: tuple[str, ...], tokens: list[str], words: list[_Word], start: int) -> int:
    """Where the words ``rest`` end if they follow from ``start`` on, each as written or lemmatised ("playing
    tennis" -> play tennis); a caption's hyphen between them is optional ("ice-cream cone"). 0 if they do not."""
    j, n = start, len(tokens)
    for word in rest:
        if j < n and tokens[j] == HYPHEN and word != HYPHEN:
            j += 1
        if j >= n or word not in words[j].spellings:
            return 0
        j += 1
    return j


def _keys(name: str) -> list[tuple[str, ...]]:
    """The token sequences a name is matched by, its own spelling first, then joined at hyphens ("tshirt")."""
    tokens = tuple(tokenize(name))
    keys = [tokens]
    if HYPHEN in tokens:
        keys.append(tuple(t for t in tokens if t != HYPHEN))
        keys.append(tuple(tokenize(name.replace(HYPHEN, ""))))
    return [k for k in dict.fromkeys(keys) if k]
