"""Finding the image files of folders, with a reason for every odd entry instead of silence.

A folder is walked recursively for files with an image suffix, in sorted order. What cannot be tagged as a
file is reported, never dropped silently: a dangling symbolic link, a symbolic link loop, a pipe or device
named like an image (reading one would block). Entries that are not images but look like one, or are not
walked, come with a note: a folder named ``x.jpg`` (its images are found), a link to a folder (not followed,
as ``find`` does, so that a link cannot make a loop). Names that are not valid UTF-8 are found like any other
(on Linux a file name is bytes); :func:`printable` shows them with their bytes escaped.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Found:
    """One entry of the inputs: an image to tag (``problem`` and ``note`` None), one that cannot be tagged
    (``problem``: why; a failure), or a remark about something that is not an image (``note``)."""

    path: Path
    problem: str | None = None
    note: str | None = None

    @property
    def is_image(self) -> bool:
        return self.problem is None and self.note is None


def printable(text: str | Path) -> str:
    """``text`` as valid UTF-8: bytes of a file name that are not UTF-8 (Python keeps them as surrogates) are
    shown as ``\\xNN`` escapes, so that text and JSON output can always be written."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates, not from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_utf8(text: str | Path) -> bool:
    """Whether ``text`` can be stored as UTF-8 (FiftyOne's database stores nothing else)."""
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_images(inputs: Iterable[str | Path]) -> Iterator[Found]:
    """Files as given (a missing or unreadable one is reported by the tagging); folders walked recursively."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():  # False for a symbolic link loop: it is then reported as an unreadable file
            yield from _walk(path)
        else:
            yield Found(path)


def _walk(root: Path) -> list[Found]:
    found: list[Found] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            found.append(Found(folder, problem=f"cannot list this folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            path = Path(entry.path)
            named_like_an_image = path.suffix.lower() in IMAGE_SUFFIXES
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                    if named_like_an_image:
                        found.append(Found(path, note="a folder named like an image: not an image itself (the "
                                                      "images inside it are tagged)"))
                    continue
                if entry.is_symlink():
                    item = _link(path, named_like_an_image)
                elif not named_like_an_image:
                    continue
                elif entry.is_file(follow_symlinks=False):
                    item = Found(path)
                else:
                    item = Found(path, problem="not a regular file (a pipe, socket or device)")
            except OSError as exc:
                item = Found(path, problem=f"cannot be examined ({exc.strerror or exc})")
            if item is not None:
                found.append(item)
    return sorted(found, key=lambda f: f.path.parts)


def _link(path: Path, named_like_an_image: bool) -> Found | None:
    try:
        target = path.stat()  # follows the link
    except OSError as exc:
        if not named_like_an_image:
            return None
        if exc.errno == errno.ELOOP:
            return Found(path, problem="a symbolic link loop")
        return Found(path, problem=f"a dangling symbolic link (its target {os.readlink(path)!s} does not exist)")
    if stat.S_ISDIR(target.st_mode):
        return Found(path, note="a link to a folder: not followed (name the folder itself to tag its images)")
    if not named_like_an_image:
        return None
    if not stat.S_ISREG(target.st_mode):
        return Found(path, problem="links to something that is not a regular file (a pipe, socket or device)")
    return Found(path)
