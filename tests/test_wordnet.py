"""WordNet offline: prepared from the Debian files for NLTK, found again later, and a clear error without it."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest

from fiftyone_ram.labels.wordnet import (
    DEBIAN_WORDNET_DIR,
    WordNetUnavailableError,
    ensure_wordnet,
    lexnames_text,
    load_wordnet,
    open_wordnet,
    prepare_wordnet_corpus,
    sense_count,
)

_POS_OF_SS_TYPE = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


def test_lexnames_match_the_lexicographer_numbers_in_the_debian_data_files():
    lexnames = [line.split("\t") for line in lexnames_text().splitlines()]
    assert [int(number) for number, _, _ in lexnames] == list(range(45))
    used = set()
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        for line in (DEBIAN_WORDNET_DIR / name).read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence header
                continue
            _, filenum, ss_type = line.split(" ", 3)[:3]
            used.add((int(filenum), _POS_OF_SS_TYPE[ss_type]))
    for number, pos in used:
        _, lexname, pos_number = lexnames[number]
        assert lexname.split(".")[0] == pos, (number, lexname, pos)
        assert int(pos_number) == {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[pos]
    assert {n for n, _ in used} == set(range(45))


def test_prepared_corpus_is_copied_and_read_by_nltk(tmp_path, monkeypatch):
    corpus = prepare_wordnet_corpus(DEBIAN_WORDNET_DIR, tmp_path)
    assert corpus == tmp_path / "corpora" / "wordnet"
    files = sorted(p.name for p in corpus.iterdir())
    assert "lexnames" in files and "index.sense" in files and "data.noun" in files
    assert not any(p.is_symlink() for p in corpus.iterdir())
    stamp = (corpus / "data.noun").stat().st_mtime_ns
    assert prepare_wordnet_corpus(DEBIAN_WORDNET_DIR, tmp_path) == corpus  # nothing copied again
    assert (corpus / "data.noun").stat().st_mtime_ns == stamp

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    reader = open_wordnet(nltk.data.find("corpora/wordnet"))  # NLTK's reader (one slow start-up step skipped)
    dog = reader.synsets("dog")[0]
    assert dog.name() == "dog.n.01" and dog.lexname() == "noun.animal"  # lexnames read correctly
    assert reader.synset("run.v.01").lexname() == "verb.motion"
    assert reader._morphy("women", "n") == ["woman"]


def test_ensure_wordnet_prepares_once_and_the_reader_works():
    path = ensure_wordnet()
    assert path.name in ("wordnet", "wordnet.zip")
    assert str(path.parents[1]) in nltk.data.path  # the NLTK data folder that holds corpora/wordnet
    assert ensure_wordnet() == path
    wordnet = load_wordnet()
    assert "run" in wordnet._morphy("running", "v")
    assert sense_count(wordnet, "run", "v") > sense_count(wordnet, "run", "n") > 0


def test_clear_error_when_neither_nltk_corpus_nor_debian_files(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setenv("FIFTYONE_RAM_HOME", str(tmp_path / "home"))
    with pytest.raises(WordNetUnavailableError, match="wordnet-base wordnet-sense-index"):
        ensure_wordnet(debian_dir=tmp_path / "missing")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "data.noun").write_text("")
    with pytest.raises(WordNetUnavailableError, match="index.sense"):
        ensure_wordnet(debian_dir=partial)
    assert not (tmp_path / "home" / "nltk_data" / "corpora" / "wordnet").exists()


def test_falls_back_to_the_ram_home_when_no_nltk_folder_is_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "absent")])
    monkeypatch.setenv("FIFTYONE_RAM_HOME", str(tmp_path / "home"))
    corpus = ensure_wordnet(debian_dir=DEBIAN_WORDNET_DIR)
    assert corpus == tmp_path / "home" / "nltk_data" / "corpora" / "wordnet"
    assert nltk.data.path[0] == str(tmp_path / "home" / "nltk_data")
    # a later process finds it through the home folder, without the Debian files
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "absent")])
    assert ensure_wordnet(debian_dir=tmp_path / "missing") == Path(corpus)
