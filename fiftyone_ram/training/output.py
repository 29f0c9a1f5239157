"""The output folder of a fine-tuning run: one run at a time, and ``overwrite`` removes only what fine-tuning
wrote there.

One run at a time: the run holds an exclusive ``fcntl.flock`` on a lock file inside the folder for as long
as it runs. The operating system releases it when the process ends, killed or not, so a crashed run never
blocks the next one; the file names the holder (pid and host) for the message a second run gets. The
folder's own files: the model folder's fixed names (``fiftyone_ram.model_folder.MODEL_FOLDER_FILES``), the
log, and in ``resume/`` the states and generators (``resume.own_files``). A user's other files stay, even
in ``resume/``; a ``log.jsonl`` that a run did not write stops the run before anything is removed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from fiftyone_ram.errors import UserError
from fiftyone_ram.model_folder import MODEL_FOLDER_FILES
from fiftyone_ram.training import resume

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOG_FILE = "log.jsonl"
LOCK_FILE = ".finetune.lock"


class OutputFolderError(UserError, RuntimeError):
    """An output folder a run cannot use as it stands (busy, in use, holding a file that is not a run's)."""


class OutputLock:
    """An exclusive lock on ``folder`` for the length of a run; :meth:`release` removes the lock file, and the
    folder too when this run created it and left it empty (a run refused before writing anything)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.created = False
        self._fd: int | None = None

    def acquire(self) -> None:
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputFolderError(f"the output folder {self.folder} is in use by another fine-tuning run "
                                        f"({holder}): wait for it to end, or write to another folder") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting run then locks a new file
            os.close(self._fd)
            self._fd = None
        if self.created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").strip()
    return text or "a process that is starting"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def is_busy(folder: Path) -> bool:
    """Whether ``folder`` holds anything but a run's lock file."""
    return folder.is_dir() and any(p.name != LOCK_FILE for p in folder.iterdir())


def check_log(folder: Path) -> None:
    """Refuse a ``log.jsonl`` that no run wrote (its first line is not a run's start): it is the user's, and a
    run would remove it."""
    path = folder / LOG_FILE
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if not first.strip():
        return  # empty: nothing to lose
    try:
        ours = json.loads(first).get("type") == "start"
    except (json.JSONDecodeError, AttributeError):
        ours = False
    if not ours:
        raise OutputFolderError(f"{path} was not written by fine-tuning and a run would replace it: move it away, "
                                f"or write to another folder")


def clear(folder: Path) -> list[str]:
    """Remove a previous run's files from ``folder`` (model files, log, resumable state, their temporary
    files); returns the other entries, which are kept (relative names, sorted)."""
    for name in (*MODEL_FOLDER_FILES, LOG_FILE):
        for path in (folder / name, folder / f".{name}.tmp"):
            path.unlink(missing_ok=True)
    resume.remove(folder / resume.RESUME_DIR)
    kept = []
    for path in sorted(folder.iterdir()):
        if path.name == LOCK_FILE:
            continue
        if path.name == resume.RESUME_DIR and path.is_dir():
            kept += [f"{path.name}/{p.name}" for p in sorted(path.iterdir())]
        else:
            kept.append(path.name + ("/" if path.is_dir() else ""))
    return kept
