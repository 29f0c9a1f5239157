"""Failed ``clean`` and ``generate`` runs on a real FiftyOne database: refused inputs write nothing, a run
that fails early leaves nothing behind, one that fails later (an exception, or its process killed) is
recorded as such, so that the next run says so truthfully and ``--resume`` (clean) continues it. Through the
Python API, the CLI and real processes killed halfway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


class StopsAfter:
    """A real crop encoder, caption parser or tagger that fails (raises) once it has answered ``calls``
    times: the failure of a device or a library halfway through a run."""

    def __init__(self, inner, method: str, calls: int) -> None:
        self.inner, self.method, self.calls = inner, method, calls

    def __getattr__(self, name):
        value = getattr(self.inner, name)
        if name != self.method:
            return value

        def answer(*args, **kwargs):
            if self.calls == 0:
                raise RuntimeError("device lost")
            self.calls -= 1
            return value(*args, **kwargs)

        return answer


@pytest.fixture()
def dataset(tmp_path, cleaning_dataset):
    ds, _ = cleaning_dataset(tmp_path, per_category=4)
    ds.persistent = True  # the killed processes below load it by name
    ds.save_view("empty", ds.match({"filepath": "nowhere"}))
    yield ds
    ds.delete()


def _clean(ds, encoder, **kwargs):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.regions import DetectionsRegions

    return clean_tags(ds, "gt", regions=DetectionsRegions(ds, "objects"), encoder=encoder, categories_per_batch=1,
                      batch_size=64, **kwargs)


def _flags(ds) -> dict[tuple[str, str], str]:
    return {(Path(p).name, c.label): c.flag_reason for p, v in zip(*ds.values(["filepath", "gt_review"]))
            for c in v.classifications if c.has_field("flag_reason") and c.flag_reason}


def _written(ds) -> tuple:
    return ds.list_runs(), sorted(ds.get_field_schema()), ds.list_saved_views()


def _child(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a new Python process on the same database (the environment is inherited)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _cli(*args: str):
    from fiftyone_ram.cli import main

    return CliRunner().invoke(main, list(args))


# -- clean --------------------------------------------------------------------------------------------------


def test_refused_cleanings_write_nothing_and_do_not_block_the_next(dataset, tiny_clip_vision_dir):
    import fiftyone as fo

    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.review import CleaningError
    from fiftyone_ram.errors import UserError

    ds = dataset
    encoder = ClipCrops(str(tiny_clip_vision_dir), device="cpu")
    before = _written(ds)
    for samples, message in ((ds.load_saved_view("empty"), "nothing to clean: the view has no samples"),
                             (ds.match({"filepath": {"$regex": "wrong_dog"}}).set_field("gt.classifications", []),
                              "no sample of the view \\(1 samples\\) has a tag in 'gt'")):
        with pytest.raises(CleaningError, match=message) as error:
            _clean(samples, encoder)
        assert isinstance(error.value, UserError) and "\n" not in str(error.value)
    with pytest.raises(CleaningError, match="zebra: no sample has this tag"):
        _clean(ds, encoder, categories=["zebra"])
    assert _written(ds) == before
    ds.add_sample_field("gt_review", fo.StringField)  # the user's own field
    with pytest.raises(CleaningError, match="'gt_review' already exists and is not this cleaning's"):
        _clean(ds, encoder)
    ds.delete_sample_field("gt_review")
    assert _clean(ds, encoder).categories_done == ["cat", "dog", "car"]  # no false "already cleaned"


def test_a_clean_that_fails_resumes_where_it_stopped(dataset, tiny_clip_vision_dir):
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.review import CleaningError

    ds = dataset
    encoder = ClipCrops(str(tiny_clip_vision_dir), device="cpu")
    before = _written(ds)
    with pytest.raises(RuntimeError, match="device lost"):  # in the first batch of categories
        _clean(ds, StopsAfter(encoder, "encode", 0))
    assert _written(ds) == before  # nothing to resume: nothing left behind
    with pytest.raises(RuntimeError, match="device lost"):  # in the second: the first is kept
        _clean(ds, StopsAfter(encoder, "encode", 1))
    from fiftyone_ram.driver import runs

    # Stopped by an error: the run is recorded as failed, with its reason (interrupted is a user's stop).
    assert (runs.load(ds, "clean", "gt").status, runs.load_state(ds, "clean", "gt")["categories_done"]) == \
        ("failed", ["cat"])
    with pytest.raises(CleaningError, match=r"stopped \(RuntimeError: device lost\) after 1 of 3 categories.*resume"):
        _clean(ds, encoder)
    with pytest.raises(CleaningError, match="cannot resume .*fraction was 0.1, now 0.2"):
        _clean(ds, encoder, resume=True, fraction=0.2)
    resumed = _clean(ds, encoder, resume=True)
    assert resumed.categories_done == ["cat", "dog", "car"]
    assert runs.load(ds, "clean", "gt").status == "completed"
    flags = _flags(ds)
    with pytest.raises(CleaningError, match="was already cleaned \\(3 categories"):
        _clean(ds, encoder)
    again = _clean(ds, encoder, overwrite=True)  # the same cleaning in one go finds the same
    assert _flags(ds) == flags and again.flagged == resumed.flagged


CLEAN_AND_DIE = """
    import os, sys
    import fiftyone as fo
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    class DiesAfterOneBatch(ClipCrops):
        calls = 0

        def encode(self, crops, categories):
            if self.calls == 1:
                os._exit(17)  # killed: no exception handler runs
            self.calls += 1
            return super().encode(crops, categories)

    ds = fo.load_dataset(sys.argv[1])
    clean_tags(ds, "gt", regions=DetectionsRegions(ds, "objects"), encoder=DiesAfterOneBatch(sys.argv[2], device="cpu"),
               categories_per_batch=1, batch_size=64)
"""


@pytest.mark.slow
def test_a_killed_clean_is_reported_and_resumed_from_the_cli(dataset, tiny_clip_vision_dir):
    ds = dataset
    options = ["--tag-field", "gt", "--regions-field", "objects", "--embedder", "clip", "--clip-model",
               str(tiny_clip_vision_dir), "--no-check", "--device", "cpu", "--categories-per-batch", "1",
               "--batch-size", "64"]
    empty = _cli("clean", ds.name, "--view", "empty", *options)
    assert empty.exit_code != 0 and "Traceback" not in empty.output
    lines = empty.output.strip().splitlines()
    assert len(lines) == 1 and "nothing to clean: the view has no samples" in lines[0]
    ds.reload()
    assert not ds.has_run("ram_clean_gt")

    killed = _child(CLEAN_AND_DIE, ds.name, str(tiny_clip_vision_dir))
    assert killed.returncode == 17, killed.stderr
    ds.reload()  # this process's dataset object learns what the other process wrote
    from fiftyone_ram.driver import runs

    assert runs.load(ds, "clean", "gt").status == "running"
    refused = _cli("clean", ds.name, *options)
    assert refused.exit_code != 0 and len(refused.output.strip().splitlines()) == 1
    assert "did not finish" in refused.output and "after 1 of 3 categories" in refused.output
    assert "--resume" in refused.output
    resumed = _cli("clean", ds.name, *options, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["categories_done"] == ["cat", "dog", "car"]


# -- generate -----------------------------------------------------------------------------------------------


def test_a_generate_that_fails_leaves_no_field_or_says_it_is_partial(dataset, caption_parser, monkeypatch):
    from fiftyone_ram.engine import generation
    from fiftyone_ram.engine.generation import GenerationError, generate_tags

    ds = dataset
    ds.set_values("caption", [f"a dog and a cat, picture {i}" for i in range(len(ds))])
    monkeypatch.setattr(generation, "CHUNK", 4)  # several database writes for these few samples
    before = _written(ds)
    with pytest.raises(RuntimeError, match="device lost"):  # a new field, in its second chunk
        generate_tags(ds, "generated", tag_fields=["gt"], caption_fields=["caption"],
                      parser=StopsAfter(caption_parser, "tags", 6))
    assert _written(ds) == before  # the first chunk's writes are gone too
    with pytest.raises(GenerationError, match="nothing to generate: the view has no samples"):
        generate_tags(ds.load_saved_view("empty"), "generated", tag_fields=["gt"])
    full = generate_tags(ds, "generated", tag_fields=["gt"], caption_fields=["caption"], parser=caption_parser)
    assert full.samples == len(ds)

    with pytest.raises(RuntimeError, match="device lost"):  # an overwrite that stops halfway
        generate_tags(ds, "generated", tag_fields=["objects"], caption_fields=["caption"],
                      parser=StopsAfter(caption_parser, "tags", 6), overwrite=True)
    with pytest.raises(GenerationError, match=r"'generated' is partial: an earlier generate stopped \(RuntimeError: "
                                              r"device lost\) after 4 of 15 samples: pass overwrite"):
        generate_tags(ds, "generated", tag_fields=["gt"])
    generate_tags(ds, "generated", tag_fields=["gt"], overwrite=True)
    with pytest.raises(GenerationError, match="'generated' already exists: pass overwrite"):
        generate_tags(ds, "generated", tag_fields=["gt"])


GENERATE_AND_DIE = """
    import os, sys
    import fiftyone as fo
    from fiftyone_ram.engine import generation
    from fiftyone_ram.labels.caption_parser import CaptionParser
    from fiftyone_ram.labels.label_system import LabelSystem

    class DiesInTheSecondChunk(CaptionParser):
        calls = 0

        def tags(self, texts):
            self.calls += 1
            if self.calls > 6:
                os._exit(17)
            return super().tags(texts)

    generation.CHUNK = 4
    ds = fo.load_dataset(sys.argv[1])
    generation.generate_tags(ds, "generated", caption_fields=["caption"],
                             parser=DiesInTheSecondChunk(LabelSystem(names=["dog", "cat"])))
"""


@pytest.mark.slow
def test_a_killed_generate_is_reported_as_partial_by_the_cli(dataset, tmp_path, parser_tag_file):
    ds = dataset
    ds.set_values("caption", [f"a dog and a cat, picture {i}" for i in range(len(ds))])
    killed = _child(GENERATE_AND_DIE, ds.name)
    assert killed.returncode == 17, killed.stderr
    ds.reload()
    assert ds.count("generated") == 4  # the first chunk was written before the process died
    options = ["--caption-field", "caption", "--parser-tags", str(parser_tag_file(tmp_path))]
    refused = _cli("generate", ds.name, *options)
    assert refused.exit_code != 0 and len(refused.output.strip().splitlines()) == 1
    assert "'generated' is partial" in refused.output and "after 4 of 15 samples" in refused.output
    assert "--overwrite" in refused.output
    done = _cli("generate", ds.name, *options, "--overwrite", "--json")
    assert done.exit_code == 0, done.output
    ds.reload()
    assert ds.count("generated") == len(ds)
    again = _cli("generate", ds.name, *options)
    assert again.exit_code != 0 and "already exists" in again.output and "partial" not in again.output
