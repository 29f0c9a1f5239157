"""Bad input gives one line naming the file, key or option (issue 11, cases 8 and 10): thresholds (options,
files, ``evaluate``), configs, tag lists, files that are not checkpoints; on the command line every such error
is one line on stderr with exit status 2, and ``--debug`` / ``FIFTYONE_RAM_DEBUG=1`` shows the traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fiftyone_ram.errors import UserError

BAD_THRESHOLDS = ("nan", "1.5", "-1", "inf")


def _cli(*args: str, env: dict | None = None):
    from fiftyone_ram.cli import main

    return CliRunner(env=env).invoke(main, [str(a) for a in args])


def _one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


# -- thresholds ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_bad_threshold_options_are_refused(value, parity_dir, tiny_cli_args):
    line = _one_line(_cli("tag", parity_dir / "rocket.png", *tiny_cli_args("ram"), "--threshold", value))
    assert "--threshold" in line and "0 <= t <= 1" in line


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_bad_values_in_a_threshold_file_name_the_line(value, tmp_path, tiny_tagger, upstream_dir):
    from fiftyone_ram.tag_files import read_tag_list

    count = len(read_tag_list(upstream_dir / "ram_tag_list.txt"))
    path = tmp_path / "thresholds.txt"
    path.write_text("\n".join(["0.7"] * 3 + [value] + ["0.7"] * (count - 4)) + "\n")
    with pytest.raises(UserError) as excinfo:
        tiny_tagger("ram", thresholds=path)
    assert str(excinfo.value).startswith(f"{path}:4:") and "\n" not in str(excinfo.value)
    with pytest.raises(UserError, match="value 4 of"):  # the same values given as a list
        tiny_tagger("ram", thresholds=[0.7] * 3 + [float(value)] + [0.7] * (count - 4))


@pytest.mark.parametrize("value", [float("nan"), 1.5, -1.0])
def test_bad_thresholds_are_refused_by_the_python_api(value, tiny_tagger, parity_dir, tiny_model_settings):
    tagger = tiny_tagger("ram")
    with pytest.raises(UserError, match="threshold"):
        tagger.predict([str(parity_dir / "rocket.png")], threshold=value)
    import fiftyone_ram.fiftyone as forf

    with pytest.raises(UserError, match="confidence_thresh"):
        forf.load_model(**tiny_model_settings(), device="cpu", confidence_thresh=value)


def test_bad_thresholds_in_evaluate(tmp_path):
    fo = pytest.importorskip("fiftyone")
    from fiftyone_ram.evaluation.run import evaluate_tags

    dataset = fo.Dataset()
    dataset.add_sample(fo.Sample(filepath="/tmp/fiftyone-ram-eval/one.jpg",
                                 gt=fo.Classifications(classifications=[fo.Classification(label="cat")]),
                                 ram=fo.Classifications(classifications=[fo.Classification(label="cat",
                                                                                           confidence=0.8)])))
    for value in (float("nan"), 1.5, -1):
        with pytest.raises(UserError, match="threshold"):
            evaluate_tags(dataset, "ram", "gt", threshold=value)
    tags = tmp_path / "tags.txt"
    tags.write_text("cat\ndog\n")
    with pytest.raises(UserError, match="threshold"):
        evaluate_tags(dataset, "ram", "gt", model_tags=str(tags), threshold={"cat": 2.0})
    for value in BAD_THRESHOLDS:
        line = _one_line(_cli("evaluate", "--dataset", dataset.name, "--pred", "ram", "--gt", "gt", "--threshold",
                              value))
        assert "--threshold" in line
    file = tmp_path / "thresholds.txt"
    file.write_text("0.5\nnan\n")
    line = _one_line(_cli("evaluate", "--dataset", dataset.name, "--pred", "ram", "--gt", "gt", "--model-tags", tags,
                          "--thresholds", file))
    assert f"{file}:2" in line
    assert not dataset.list_evaluations()
    dataset.delete()


# -- configs -------------------------------------------------------------------------------------------------

def _tiny_config(parity_dir) -> dict:
    return json.loads((parity_dir / "fixtures_tiny.json").read_text())


CONFIG_CHANGES = {
    "empty depths": (lambda c: c["config"]["swin"].update(depths=[], num_heads=[]), "swin.depths"),
    "too few heads": (lambda c: c["config"]["swin"].update(num_heads=[1, 2]), "swin.num_heads"),
    "image_size 0": (lambda c: c["config"].update(image_size=0), "image_size"),
    "patch 0": (lambda c: c["config"]["swin"].update(patch_size=0), "swin.patch_size"),
    "window 0": (lambda c: c["config"]["swin"].update(window_size=0), "swin.window_size"),
    "heads do not divide": (lambda c: c["config"]["swin"].update(num_heads=[3, 2, 4, 8]), "swin.num_heads[0]"),
    "224.7": (lambda c: c["config"].update(image_size=224.7), "image_size"),
    "unknown key": (lambda c: c["config"]["swin"].update(window=7), "'window'"),
    "misspelt top key": (lambda c: c["config"].update(imagesize=224), "'imagesize'"),
    "string size": (lambda c: c["config"]["bert"].update(hidden_size="64"), "bert.hidden_size"),
    "bert heads": (lambda c: c["config"]["q2l"].update(num_attention_heads=5), "q2l.num_attention_heads"),
}


@pytest.mark.parametrize("case", list(CONFIG_CHANGES))
def test_bad_configs_are_one_line_naming_the_key(case, parity_dir, tmp_path, tiny_cli_args):
    from fiftyone_ram.models.config import ConfigError, load_config_file

    change, key = CONFIG_CHANGES[case]
    data = copy.deepcopy(_tiny_config(parity_dir))
    change(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as excinfo:
        load_config_file(path, family="ram")
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and key in message, message
    args = tiny_cli_args("ram")
    args[args.index("--config") + 1] = str(path)
    assert key in _one_line(_cli("tag", parity_dir / "rocket.png", *args))


def test_a_config_that_is_a_json_list(tmp_path):
    from fiftyone_ram.models.config import ConfigError, load_config_file

    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="list, not an object"):
        load_config_file(path, family="ram")


# -- tag lists -----------------------------------------------------------------------------------------------

def _tag_list_copy(upstream_dir, tmp_path, edit) -> Path:
    names = (upstream_dir / "ram_tag_list.txt").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "tags.txt"
    data = edit(names)
    path.write_bytes(data if isinstance(data, bytes) else ("\n".join(data) + "\n").encode("utf-8"))
    return path


@pytest.mark.parametrize("case, edit, words", [
    ("latin-1", lambda n: ("\n".join(["café", *n[1:]]) + "\n").encode("latin-1"), "not UTF-8 text (byte 4, line 1)"),
    ("duplicate", lambda n: [n[0], n[0], *n[2:]], "more than once"),
    ("blank", lambda n: [n[0], "  ", *n[2:]], "blank name(s), at line(s) 2"),
])
def test_bad_tag_lists_name_the_file(case, edit, words, upstream_dir, tmp_path, tiny_tagger, parity_dir,
                                     tiny_cli_args):
    path = _tag_list_copy(upstream_dir, tmp_path, edit)
    with pytest.raises(UserError) as excinfo:
        tiny_tagger("ram", tag_list=path)
    assert str(path) in str(excinfo.value) and words in str(excinfo.value)
    args = tiny_cli_args("ram")
    args[args.index("--tag-list") + 1] = str(path)
    assert words in _one_line(_cli("tag", parity_dir / "rocket.png", *args))


def test_upstream_tag2text_list_with_homographs_still_loads(tiny_tag2text):
    names = tiny_tag2text.tag_list
    assert len(names) != len(set(names))  # upstream's own list repeats names: trusted by its sha256


# -- files that are not checkpoints ---------------------------------------------------------------------------

def test_random_bytes_are_not_described_as_code(tmp_path, tiny_tagger):
    from fiftyone_ram.models.checkpoint import CheckpointError

    path = tmp_path / "random.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", path)
    message = str(excinfo.value)
    assert "not a PyTorch file" in message and str(path) in message
    assert "run code" not in message and "weights_only" not in message
    pickled = tmp_path / "pickled.pth"
    pickled.write_bytes(b"\x80\x04" + np.random.default_rng(1).bytes(4096))  # starts like a pickle
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", pickled)
    assert "run code" not in str(excinfo.value) and "weights_only" not in str(excinfo.value)


# -- the command line: one line, exit 2; the traceback on request ---------------------------------------------

@pytest.mark.slow
def test_debug_shows_the_traceback(parity_dir, tiny_cli_args, tmp_path):
    missing = tmp_path / "missing.pth"
    args = tiny_cli_args("ram")
    args[args.index("--checkpoint") + 1] = str(missing)
    plain = _cli("tag", parity_dir / "rocket.png", *args)
    assert str(missing) in _one_line(plain)
    debug = _cli("--debug", "tag", parity_dir / "rocket.png", *args)
    assert debug.exit_code == 2 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr

    env = {"FIFTYONE_RAM_DEBUG": "1"}  # in the environment, as a user sets it
    result = _cli("tag", parity_dir / "rocket.png", *args, env=env)
    assert result.exit_code == 2 and "Traceback" in result.stderr and str(missing) in result.stderr
    assert "CheckpointError" in result.stderr
