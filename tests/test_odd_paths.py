"""Odd entries among the inputs (issue 11, case 5): a file name that is not UTF-8, a symbolic link loop (in a
folder and named on the command line), a dangling link, a folder named ``x.jpg``. Each is one line on stderr
and the run goes on, in both modes; ``--json`` output is valid UTF-8 JSON, one object a line."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

fo = pytest.importorskip("fiftyone")

NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: bytes Python keeps as a surrogate


@pytest.fixture()
def odd_folder(tmp_path, copy_pngs):
    """Two good images, one in a folder named like an image, one under a name that is not UTF-8, and three
    links: dangling, a loop, a loop outside the folder (to name on the command line)."""
    folder = tmp_path / "odd"
    _, _, third, fourth, fifth = copy_pngs(folder)
    fifth.unlink()
    (folder / "x.jpg").mkdir()
    third.rename(folder / "x.jpg" / "inside.png")
    try:
        fourth.rename(folder / NOT_UTF8)
    except (OSError, UnicodeEncodeError):  # a file system that refuses such names has no such files
        pytest.skip("this file system does not store names that are not UTF-8")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (tmp_path / "named-loop.jpg").symlink_to(tmp_path / "named-loop.jpg")
    return folder


def _run(*args):
    """The CLI in this process; output kept as bytes, to check that it is UTF-8."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, [os.fspath(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout_bytes, stderr=result.stderr_bytes)


def _json_lines(data: bytes) -> list[dict]:
    text = data.decode("utf-8")  # raises if the output is not valid UTF-8
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_printing_mode_reports_each_odd_entry_and_tags_the_rest(odd_folder, tiny_cli_args, tmp_path):
    loop = tmp_path / "named-loop.jpg"
    result = _run("tag", odd_folder, loop, *tiny_cli_args("ram"), "--json")
    assert result.returncode == 1, result.stderr  # some entries could not be read: 1, not a crash
    assert b"Traceback" not in result.stderr
    tagged = {record["image"] for record in _json_lines(result.stdout)}
    printable_name = str(odd_folder / "caf\\xe9.png")  # the undecodable byte shown escaped
    assert tagged == {str(odd_folder / "astronaut.png"), str(odd_folder / "chelsea.png"),
                      str(odd_folder / "x.jpg" / "inside.png"), printable_name}
    reported = {record["image"]: record.get("error") or record.get("note") for record in _json_lines(result.stderr)}
    assert "dangling" in reported[str(odd_folder / "dangling.png")]
    assert "loop" in reported[str(odd_folder / "loop.png")]
    assert "folder" in reported[str(odd_folder / "x.jpg")]
    assert str(loop) in reported  # named on the command line: unreadable, one line

    text = _run("tag", odd_folder, *tiny_cli_args("ram"))
    assert text.returncode == 1 and b"Traceback" not in text.stderr
    assert text.stdout.decode("utf-8").count("camera") == 0  # both streams are valid UTF-8
    lines = text.stderr.decode("utf-8").splitlines()
    for name in ("dangling.png", "loop.png", "x.jpg"):
        assert sum(str(odd_folder / name) + ":" in line for line in lines) == 1, lines


def test_dataset_mode_skips_odd_entries_one_line_each_and_reruns_work(odd_folder, tiny_cli_args, tmp_path):
    name = f"odd-{tmp_path.name}"
    loop = tmp_path / "named-loop.jpg"
    for attempt in ("first", "rerun"):
        flags = ["--resume"] if attempt == "rerun" else []
        result = _run("tag", odd_folder, loop, "--dataset", name, *tiny_cli_args("ram"), "--field", "ram",
                      "--num-workers", "0", "--json", *flags)
        assert result.returncode == 1, result.stderr  # some files skipped or unreadable
        assert b"Traceback" not in result.stderr, result.stderr
        summary = _json_lines(result.stdout)[-1]
        skipped = summary["skipped_files"]
        assert {os.path.basename(p) for p in skipped} == {"caf\\xe9.png", "dangling.png", "loop.png"}
        assert "UTF-8" in skipped[str(odd_folder / "caf\\xe9.png")]
        assert list(summary["failed"]) == [str(loop)]  # a sample, recorded as unreadable
        notes = [r for r in _json_lines(result.stderr) if "note" in r]
        assert [r["image"] for r in notes] == [str(odd_folder / "x.jpg")]
    dataset = fo.load_dataset(name)
    assert sorted(os.path.basename(p) for p in dataset.values("filepath")) == [
        "astronaut.png", "chelsea.png", "inside.png", "named-loop.jpg"]
    assert dataset.count("ram") == 3 and "loop" in dataset.one(fo.ViewField("filepath") == str(loop)).ram_error
    dataset.delete()


def test_python_add_images_refuses_names_it_cannot_store_and_adds_nothing(odd_folder, tmp_path):
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.driver.datasets import add_images
    from fiftyone_ram.image_files import find_images

    found = list(find_images([odd_folder]))
    images = [f.path for f in found if f.is_image]
    assert {f.path.name: f.problem for f in found if f.problem} == {
        "dangling.png": f"a dangling symbolic link (its target {tmp_path / 'nowhere.png'} does not exist)",
        "loop.png": "a symbolic link loop"}
    name = f"py-odd-{tmp_path.name}"
    with pytest.raises(UserError, match="not valid UTF-8") as excinfo:
        add_images(name, images)
    assert "\n" not in str(excinfo.value)
    assert not fo.dataset_exists(name)  # nothing was created
    dataset = add_images(name, [p for p in images if p.name != NOT_UTF8] + [tmp_path / "named-loop.jpg"])
    assert len(dataset) == 4
    dataset.delete()
