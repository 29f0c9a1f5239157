"""Caption text: tokens, word forms and the scope of negation, shared by the parser and the vocabulary builder.

Negation scope rule. A cue ("no", "not", "n't", "without", "never", "none", "neither", "nor", "lack") opens a
scope that covers the words after it until the first boundary: punctuation, "but" or "except" at any point;
a conjunction other than "or"/"nor", a preposition other than "of", a verb such as "is"/"are"/"have", or a
relative word ("that", "which", "who", "where") once the negated phrase has begun (a word other than a
determiner has been seen). A "without" phrase also ends at a participle ("a man without shoes walking on the
sand": the man walks). Hence "a kitchen with no people in it" negates only "people", "a man not wearing a
hat on a beach" negates "wearing a hat", and "no cars or people" negates both. "nobody", "no one",
"nothing" and "nowhere" are negated phrases themselves: they negate what follows up to a boundary ("a bench
with nobody sitting on it" negates "sitting"; "nobody is on the beach" nothing more). "no" after an article
names a thing ("a no parking sign") and is not a cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nltk.tokenize import RegexpTokenizer

from fiftyone_ram.labels.wordnet import sense_count

# Words with clitics split off as Treebank does ("don't" -> do n't, "man's" -> man 's), numbers, punctuation.
_TOKENIZER = RegexpTokenizer(r"\w+(?=n't\b)|n't\b|'(?:s|re|ll|ve|m|d)\b|\w+|[^\w\s]")
_HYPHENS = re.compile(r"[\u2010\u2011]")
HYPHEN = "-"
_CLITICS = frozenset({"'s", "'re", "'ll", "'ve", "'m", "'d"})

PHRASE_CUES = frozenset(
    {"no", "not", "n't", "without", "never", "none", "neither", "nor", "lack", "lacks", "lacking"}
)
SELF_NEGATED = frozenset({"nobody", "noone", "nothing", "nowhere"})
# Words that end a scope whenever they come.
HARD_BOUNDARIES = frozenset({"but", "except", "although", "though", "yet", "whereas", "while"})
# Words that end a scope once the negated phrase has begun.
SOFT_BOUNDARIES = frozenset(
    {
        "and", "so", "because", "then", "where", "when", "as", "that", "which", "who", "whose", "whom",
        "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "can", "could",
        "will", "would", "should", "may", "might", "must", "do", "does", "did", "seems", "seem",
        "in", "on", "at", "near", "by", "under", "over", "behind", "beside", "besides", "next", "inside",
        "outside", "around", "along", "alongside", "across", "through", "into", "onto", "from", "to",
        "toward", "towards", "with", "for", "above", "below", "beneath", "underneath", "between",
        "against", "among", "amid", "during", "after", "before", "beyond", "past", "via", "like", "upon",
        "there", "here", "it", "its", "they", "them", "he", "she", "him", "her",
    }
)
# Words that do not start the negated phrase ("no [more] people", "not [a single] cloud").
DETERMINERS = frozenset(
    {
        "a", "an", "the", "any", "some", "one", "single", "other", "more", "much", "many", "of", "this",
        "these", "those", "his", "their", "my", "your", "our", "such", "enough", "either", "or", "nor",
        "even", "really", "very", "too", "at", "all",
    }
)
_ARTICLES = frozenset({"a", "an", "the"})
FUNCTION_WORDS = PHRASE_CUES | SELF_NEGATED | HARD_BOUNDARIES | SOFT_BOUNDARIES | DETERMINERS


def normalize_caption(text: str) -> str:
    """Lower case, straight apostrophes and hyphens."""
    return _HYPHENS.sub(HYPHEN, text.lower().replace("\u2019", "'").replace("\u2018", "'"))


def tokenize(text: str) -> list[str]:
    """Caption tokens: words, "n't", hyphens and other punctuation; clitics such as the possessive "'s" are
    dropped ("a man's hat" reads as "a man hat")."""
    return [t for t in _TOKENIZER.tokenize(normalize_caption(text)) if t not in _CLITICS]


def is_word(token: str) -> bool:
    return token[0].isalnum()


def negated_positions(tokens: list[str]) -> list[bool]:
    """Which tokens are negated, by the scope rule of this module's docstring."""
    negated = [False] * len(tokens)
    in_scope = begun = False
    cue = ""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in SELF_NEGATED or (token == "no" and tokens[i + 1 : i + 2] == ["one"]):
            # "nobody", "no one": the negated phrase itself; what it does is negated up to a boundary
            width = 2 if token == "no" else 1
            negated[i : i + width] = [True] * width
            in_scope, begun, cue = True, True, token
            i += width
            continue
        if token in PHRASE_CUES and not (token == "no" and i > 0 and tokens[i - 1] in _ARTICLES):
            negated[i] = True
            in_scope, begun, cue = True, False, token
        elif in_scope and token != HYPHEN:  # "no snow-covered trees": a hyphen joins, it does not end
            if (
                not is_word(token)
                or token in HARD_BOUNDARIES
                or (begun and token in SOFT_BOUNDARIES)
                or (begun and cue == "without" and token.endswith("ing"))  # "without shoes [walking ...]"
            ):
                in_scope = False
            else:
                negated[i] = True
                begun = begun or (token not in DETERMINERS and token not in SOFT_BOUNDARIES)
        else:
            negated[i] = in_scope
        i += 1
    return negated


@dataclass(frozen=True)
class WordForms:
    """A token and the dictionary forms it may stand for, most literal first."""

    surface: str
    nouns: tuple[str, ...]  # noun lemmas other than the surface ("dogs" -> dog)
    verbs: tuple[str, ...]  # verb lemmas other than the surface ("running" -> run)


class Lemmatizer:
    """WordNet's morphological analysis of caption tokens, memoised (captions reuse a small vocabulary).

    Regular "-ed" forms get no verb lemma: in captions they are mostly adjectives ("a parked car",
    "a stuffed animal"), not the action the verb names.
    """

    def __init__(self, wordnet=None) -> None:
        if wordnet is None:
            from fiftyone_ram.labels.wordnet import load_wordnet

            wordnet = load_wordnet()
        self._wordnet = wordnet
        self._cache: dict[str, WordForms] = {}
        self._plain_nouns: dict[str, bool] = {}

    def is_plain_noun(self, token: str) -> bool:
        """Whether a word reads only as a noun, so that an "-ing" word after it is its verb rather than the
        start of a compound ("a cat [drinking] water", but "a [clean] living room", "of drinking water")."""
        found = self._plain_nouns.get(token)
        if found is None:
            found = self._plain_nouns[token] = (
                token.isalpha()
                and token not in FUNCTION_WORDS
                and bool(self._wordnet.synsets(token, "n"))
                and not self._wordnet.synsets(token, "a")
            )
        return found

    def forms(self, token: str) -> WordForms:
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self._analyse(token)
        return found

    def _analyse(self, token: str) -> WordForms:
        if not token.isalpha() or len(token) < 3:
            return WordForms(token, (), ())
        nouns = self._lemmas(token, "n")
        verbs = () if token.endswith("ed") else self._lemmas(token, "v")
        return WordForms(token, nouns, verbs)

    def _lemmas(self, token: str, pos: str) -> tuple[str, ...]:
        # WordNet's morphological analysis (what NLTK's WordNetLemmatizer wraps); the most frequent lemma in
        # WordNet's sense-tagged corpus first ("riding" -> ride before rid, "swinging" -> swing before swinge),
        # then the shortest, which is what WordNetLemmatizer would pick.
        lemmas = [lemma for lemma in self._wordnet._morphy(token, pos) if lemma != token]
        if len(lemmas) > 1:
            lemmas.sort(key=lambda lemma: (-sense_count(self._wordnet, lemma, pos), len(lemma)))
        return tuple(lemmas)
