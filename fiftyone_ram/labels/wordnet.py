"""WordNet for NLTK, offline.

NLTK's downloader needs the network, so WordNet comes from NLTK's own corpus when it is installed, otherwise
from the Debian packages ``wordnet-base`` and ``wordnet-sense-index`` (``/usr/share/wordnet``), copied into an
NLTK data folder. The files are copied, not linked: NLTK refuses corpus paths that resolve outside its data
folders. The Debian packages lack ``lexnames``, the list of WordNet's 45 lexicographer files, so it is written
here. Also here: the sense frequencies that synonym and lemma choices weigh, read once.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from fiftyone_ram.errors import UserError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# The files NLTK's WordNet reader opens; ``lexnames`` is written, the others are copied.
_COPIED_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

# WordNet 3.0's lexicographer files, in file-number order (lexnames(5WN)); the number after each is its
# part of speech (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXICOGRAPHER_FILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
_POS_NUMBERS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetUnavailableError(UserError, RuntimeError):
    """Neither NLTK's WordNet corpus nor the Debian WordNet files are on this machine."""


def lexnames_text() -> str:
    """The ``lexnames`` file NLTK expects: ``NN<TAB>name<TAB>pos`` per lexicographer file."""
    return "".join(
        f"{number:02d}\t{name}\t{_POS_NUMBERS[name.split('.')[0]]}\n"
        for number, name in enumerate(_LEXICOGRAPHER_FILES)
    )


def ensure_wordnet(debian_dir: Path | str | None = None) -> Path:
    """Make WordNet readable by NLTK and return the corpus path NLTK will read (a folder, or NLTK's zip).

    Safe to call often: once the corpus is found, nothing is copied again.
    """
    import nltk

    home_data = _home_nltk_data()
    if home_data.is_dir():
        _add_search_path(home_data)
    found = _find_nltk_wordnet()
    if found is not None:
        return found

    source = Path(debian_dir) if debian_dir is not None else DEBIAN_WORDNET_DIR
    missing = [name for name in _COPIED_FILES if not (source / name).is_file()]
    if missing:
        raise WordNetUnavailableError(
            "WordNet is not available to NLTK: no 'corpora/wordnet' in the NLTK data folders "
            f"({', '.join(nltk.data.path)}) and the Debian WordNet files are incomplete in {source} "
            f"(missing: {', '.join(missing)}). Install them with "
            "`apt-get install wordnet-base wordnet-sense-index` (scripts/setup.sh does this), "
            "or, online, `python3 -m nltk.downloader wordnet`."
        )
    target = _writable_nltk_data() or home_data
    corpus = prepare_wordnet_corpus(source, target)
    _add_search_path(target)
    return corpus


def prepare_wordnet_corpus(source: Path | str, nltk_data: Path | str) -> Path:
    """Copy the WordNet database files from ``source`` into ``<nltk_data>/corpora/wordnet`` with a ``lexnames``.

    The copy is built in a temporary folder and renamed into place, so a reader never sees half a corpus.
    """
    source, corpora = Path(source), Path(nltk_data) / "corpora"
    corpus = corpora / "wordnet"
    if _is_complete(corpus):
        return corpus
    corpora.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the corpus is for every user of this data folder
        for name in _COPIED_FILES:
            shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        if corpus.exists():  # an incomplete earlier copy
            shutil.rmtree(corpus)
        try:
            os.replace(staging, corpus)
        except OSError:  # another process finished first
            if not _is_complete(corpus):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return corpus


@functools.lru_cache(maxsize=1)
def load_wordnet():
    """The process-wide WordNet reader (about 2 s to load), prepared with :func:`ensure_wordnet` first."""
    import nltk

    ensure_wordnet()
    return open_wordnet(nltk.data.find("corpora/wordnet"))


def open_wordnet(root):
    """NLTK's WordNet reader on a corpus folder (or NLTK's zip) inside an NLTK data folder."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _WordNet30Reader(WordNetCorpusReader):
        # NLTK maps synset offsets from WordNet 3.0 (the Open Multilingual Wordnet's reference) to the loaded
        # version by reading index.sense twice, even when the loaded version is 3.0 itself. That identity map
        # costs 5 s per process and only serves the multilingual functions, which need OMW data anyway.
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": no OMW is wanted
        return _WordNet30Reader(root, None)


@functools.lru_cache(maxsize=2)
def sense_frequencies(wordnet) -> dict[str, int]:
    """Sense key -> frequency in WordNet's sense-tagged corpus, read once from ``cntlist.rev``.

    NLTK's ``Lemma.count()`` binary-searches that file on every call, 1,000 times slower than a dict.
    """
    counts = {}
    with wordnet.open("cntlist.rev") as lines:
        for line in lines:
            key, _, count = line.split()
            counts[key] = int(count)
    return counts


def exact_synsets(wordnet, word: str, pos: str, case_sensitive: bool = False) -> list:
    """The synsets that hold ``word`` itself (WordNet's lookup also returns those of its lemmas).

    Case-sensitive matching keeps a lower-case tag ("villa") off proper nouns ("Villa", Pancho Villa); tags
    written with capitals ("French fries") are matched whatever WordNet's case.
    """
    key = word.replace(" ", "_")
    if case_sensitive:
        return [s for s in wordnet.synsets(key, pos) if any(lemma.name() == key for lemma in s.lemmas())]
    key = key.lower()
    return [s for s in wordnet.synsets(key, pos) if any(lemma.name().lower() == key for lemma in s.lemmas())]


def sense_count(wordnet, word: str, pos: str) -> int:
    """How often ``word`` occurs with part of speech ``pos`` in WordNet's sense-tagged corpus."""
    counts = sense_frequencies(wordnet)
    key = word.replace(" ", "_").lower()
    return sum(
        counts.get(lemma.key(), 0)
        for synset in wordnet.synsets(key, pos)
        for lemma in synset.lemmas()
        if lemma.name().lower() == key
    )


def _find_nltk_wordnet() -> Path | None:
    import nltk

    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        return None
    if hasattr(pointer, "zipfile"):  # NLTK's downloaded wordnet.zip
        return Path(pointer.zipfile.filename)
    path = Path(pointer.path)
    return path if _is_complete(path) else None


def _is_complete(corpus: Path) -> bool:
    return corpus.is_dir() and all((corpus / name).is_file() for name in (*_COPIED_FILES, "lexnames"))


def _writable_nltk_data() -> Path | None:
    """The first NLTK data folder that exists and can be written to."""
    import nltk

    for entry in nltk.data.path:
        path = Path(entry)
        if path.is_dir() and os.access(path, os.W_OK | os.X_OK):
            return path
    return None


def _home_nltk_data() -> Path:
    try:
        from fiftyone_ram.assets import ram_home
    except ImportError:  # the assets module is not there yet: read the same setting directly
        home = Path(os.environ.get("FIFTYONE_RAM_HOME") or Path.home() / ".cache" / "fiftyone-ram")
    else:
        home = Path(ram_home())
    return home / "nltk_data"


def _add_search_path(path: Path) -> None:
    import nltk

    if str(path) not in nltk.data.path:
        nltk.data.path.insert(0, str(path))
