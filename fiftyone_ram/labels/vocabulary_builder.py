"""A new label system from a caption corpus, the way RAM's was made: parse, count, keep the top N, merge synonyms.

Parsing without a vocabulary: each caption's words are read as in :mod:`fiftyone_ram.labels.caption_text`
(negated phrases and function words skipped); runs of up to four words that WordNet knows as one noun
("living room", "fire hydrant") become one candidate (not an "-ing" word after a noun: "people riding
horses"), other words their noun lemma, else their verb lemma
("running" -> run), else themselves when WordNet knows them as adjectives. Words WordNet does not know
(typos, names) are left out. A candidate counts once per caption.

Merging: among the kept candidates, a word joins the candidate WordNet links it to by the rule of
:mod:`fiftyone_ram.labels.synonyms` ("sofa" joins "couch"), and the curated everyday merges apply when both
sides were kept ("people" joins "person"). Each group becomes one id named after its most frequent member.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fiftyone_ram.labels.caption_parser import FUNCTION_WORD_TAGS, QUANTIFIERS
from fiftyone_ram.labels.caption_text import FUNCTION_WORDS, Lemmatizer, negated_positions, tokenize
from fiftyone_ram.labels.label_system import LabelSystem
from fiftyone_ram.labels.synonyms import EVERYDAY_SYNONYMS, SenseIndex
from fiftyone_ram.labels.wordnet import exact_synsets, sense_count

MAX_PHRASE_WORDS = 4
# Verbs too general to be tags, besides the function-word tags the parser ignores.
LIGHT_WORDS = FUNCTION_WORD_TAGS | {"be", "do", "have", "get", "go", "take", "make", "come", "put", "say"}
# Nouns that locate rather than name when followed by "of" ("in front of", "on top of").
POSITIONAL = frozenset(
    {"front", "top", "side", "back", "middle", "edge", "bottom", "end", "center", "centre", "rest", "part"}
)


@dataclass(frozen=True)
class Merge:
    """Names merged into one id: the kept name, the others, and the WordNet synsets or "curated" that link them."""

    name: str
    merged: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class MappingReport:
    """What :func:`build_label_system` did, with the label system it built."""

    label_system: LabelSystem
    counts: dict[str, int]  # every parsed candidate -> number of captions it occurs in
    kept: tuple[str, ...]  # the top candidates, most frequent first
    merges: tuple[Merge, ...]
    captions: int

    def summary(self) -> str:
        lines = [
            f"{self.captions:,} captions: {len(self.counts):,} parsed tags, top {len(self.kept):,} kept, "
            f"merged into {len(self.label_system):,} ids ({len(self.merges):,} synonym groups)"
        ]
        for merge in self.merges:
            members = ", ".join(f"{m} ({self.counts[m]:,})" for m in merge.merged)
            reasons = ", ".join(merge.reasons)
            lines.append(f"  {merge.name} ({self.counts[merge.name]:,}) <- {members}  [{reasons}]")
        return "\n".join(lines)


class CaptionTermExtractor:
    """Candidate tags of one caption without a vocabulary (the parsing step of the module docstring)."""

    def __init__(self, wordnet=None) -> None:
        if wordnet is None:
            from fiftyone_ram.labels.wordnet import load_wordnet

            wordnet = load_wordnet()
        self._wordnet = wordnet
        self._lemmatizer = Lemmatizer(wordnet)
        self._word_terms: dict[str, str | None] = {}
        self._phrases: dict[tuple[str, ...], bool] = {}

    def terms(self, caption: str) -> list[str]:
        tokens = tokenize(caption)
        negated = negated_positions(tokens)
        found: dict[str, None] = {}
        i = 0
        while i < len(tokens):
            phrase = self._phrase_at(tokens, i)
            if phrase:
                if not negated[i]:
                    found[" ".join(phrase)] = None
                i += len(phrase)
                continue
            term = self._word_term(tokens[i])
            before_of = tokens[i + 1 : i + 2] == ["of"] and (tokens[i] in QUANTIFIERS or tokens[i] in POSITIONAL)
            if term and not negated[i] and not before_of:
                found[term] = None
            i += 1
        return list(found)

    def _phrase_at(self, tokens: list[str], i: int) -> tuple[str, ...] | None:
        if tokens[i] in FUNCTION_WORDS:
            return None  # WordNet also lists idioms such as "on the road"
        if tokens[i].endswith("ing") and i > 0 and self._lemmatizer.is_plain_noun(tokens[i - 1]):
            return None  # "people riding horses" are not "riding horses"
        for length in range(MAX_PHRASE_WORDS, 1, -1):
            words = tokens[i : i + length]
            if len(words) < length or not all(w.isalpha() for w in words):
                continue
            last = self._lemmatizer.forms(words[-1])
            for final in (last.surface, *last.nouns):
                phrase = (*words[:-1], final)
                if self._is_noun_phrase(phrase):
                    return phrase
        return None

    def _is_noun_phrase(self, phrase: tuple[str, ...]) -> bool:
        known = self._phrases.get(phrase)
        if known is None:
            known = self._phrases[phrase] = bool(exact_synsets(self._wordnet, " ".join(phrase), "n"))
        return known

    def _word_term(self, token: str) -> str | None:
        if token not in self._word_terms:
            self._word_terms[token] = self._read_word(token)
        return self._word_terms[token]

    def _read_word(self, token: str) -> str | None:
        if not token.isalpha() or len(token) < 2 or token in FUNCTION_WORDS:
            return None
        wordnet = self._wordnet
        verbs = [lemma for lemma in wordnet._morphy(token, "v") if lemma != token]
        if token.endswith("ed") and verbs:
            return None  # participles: "a parked car" is about the car
        counts = {pos: sense_count(wordnet, token, pos) for pos in "nvar"}
        if counts["r"] > max(counts["n"], counts["v"], counts["a"]) or _is_number(wordnet, token):
            return None  # "down", "two"
        forms = self._lemmatizer.forms(token)
        if token.endswith("ing") and forms.verbs:
            # a gerund stays a noun when it is used as one ("building", "painting"), else it is the verb
            keep = 4 * counts["n"] >= sense_count(wordnet, forms.verbs[0], "v")
            term = token if keep else forms.verbs[0]
        elif _has_lemma(wordnet, token, "n"):
            term = token  # a noun as written ("glasses")
        elif forms.nouns or forms.verbs:
            term = (forms.nouns or forms.verbs)[0]  # "dogs" -> dog, "sits" -> sit
        elif _has_lemma(wordnet, token, "v") or _has_lemma(wordnet, token, "a"):
            term = token
        else:
            return None  # not an English word WordNet knows
        return None if term in LIGHT_WORDS else term


def build_label_system(
    captions: Iterable[str | Iterable[str]],
    top_n: int = 5000,
    *,
    min_count: int = 2,
    wordnet=None,
    title: str = "captions",
) -> MappingReport:
    """Parse the captions (one string, or a list per image), count, keep ``top_n``, merge synonyms."""
    if wordnet is None:
        from fiftyone_ram.labels.wordnet import load_wordnet

        wordnet = load_wordnet()
    extractor = CaptionTermExtractor(wordnet)
    counts: Counter[str] = Counter()
    n = 0
    for item in captions:
        n += 1
        texts = (item,) if isinstance(item, str) else item
        counts.update({term for text in texts for term in extractor.terms(text)})
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    kept = tuple(ranked[:top_n])
    groups, reasons = _merge_synonyms(kept, wordnet)
    names, synonyms, merges = [], [], []
    for root in sorted(groups):
        members = sorted(groups[root], key=kept.index)  # most frequent first
        names.append(members[0])
        synonyms.append(tuple(members[1:]))
        if len(members) > 1:
            merges.append(Merge(members[0], tuple(members[1:]), tuple(sorted(reasons[root]))))
    label_system = LabelSystem(tuple(names), tuple(synonyms), title=title)
    return MappingReport(label_system, dict(counts), kept, tuple(merges), n)


def _merge_synonyms(kept: tuple[str, ...], wordnet) -> tuple[dict[int, list[str]], dict[int, set[str]]]:
    """Groups of kept names (root index -> members) and why they were merged.

    Curated merges come first and their members take no WordNet merge ("bike" is a bicycle here, though
    WordNet's first sense of "bike" is a motorcycle); a WordNet merge never joins two groups that already
    hold several names, so that links do not chain unrelated words together.
    """
    parent = list(range(len(kept)))
    size = [1] * len(kept)
    reasons: dict[int, set[str]] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int, reason: str) -> None:
        ra, rb = root(a), root(b)
        if ra == rb:
            return
        keep, drop = min(ra, rb), max(ra, rb)  # the more frequent name's group absorbs the other
        parent[drop] = keep
        size[keep] += size[drop]
        reasons.setdefault(keep, set()).update(reasons.pop(drop, set()) | {reason})

    position = {name: i for i, name in enumerate(kept)}
    curated = set()
    for word, target in EVERYDAY_SYNONYMS.items():
        if word in position and target.lower() in position:
            union(position[word], position[target.lower()], "curated")
            curated |= {position[word], position[target.lower()]}
    index = SenseIndex([(name,) for name in kept], wordnet)
    for i, name in enumerate(kept):
        found = index.link(name, exclude=i)
        if found is None or i in curated or found[0] in curated:
            continue
        if size[root(i)] > 1 and size[root(found[0])] > 1:
            continue
        union(i, found[0], found[1])
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(kept):
        groups.setdefault(root(i), []).append(name)
    return groups, {r: reasons.get(r, set()) for r in groups}


def _is_number(wordnet, word: str) -> bool:
    synsets = wordnet.synsets(word, "n")
    return bool(synsets) and synsets[0].lexname() == "noun.quantity"


def _has_lemma(wordnet, word: str, pos: str) -> bool:
    return bool(exact_synsets(wordnet, word, pos))
