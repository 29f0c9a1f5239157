"""Reading and writing upstream's plain-text tag lists and threshold files (one entry per line)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fiftyone_ram.decision import THRESHOLD_RULE, check_thresholds
from fiftyone_ram.errors import UserError


class TagFileError(UserError, ValueError):
    """A tag list or threshold file that cannot be used; the message names the file (and line)."""


class MissingTagFileError(TagFileError, FileNotFoundError):
    """A tag list or threshold file that does not exist."""


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a user's file; unreadable or undecodable files fail naming the file."""
    if not path.is_file():
        raise MissingTagFileError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise TagFileError(f"{what} {path} is not UTF-8 text (byte {exc.start + 1}, line {line}): save it as "
                           f"UTF-8") from None
    except OSError as exc:
        raise TagFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_tag_list(source: str | Path | Sequence[str]) -> list[str]:
    """Names in file order; surrounding whitespace is dropped (upstream keeps it in its Chinese output)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        names = [line.strip() for line in read_text_file(path, "tag list").splitlines()]
        while names and not names[-1]:
            names.pop()
        return names
    return [str(name).strip() for name in source]


def check_tag_names(names: Sequence[str], origin: str) -> None:
    """A tag list a model answers must name each tag once, and no tag may be blank: a blank or repeated name
    would silently merge two of the model's outputs. (Upstream's own lists are checked by sha256 instead:
    Tag2Text's has 116 legitimate homographs.)"""
    if not names:
        raise TagFileError(f"{origin} holds no tags")
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (" ..." if len(blank) > 5 else "")
        raise TagFileError(f"{origin} has {len(blank)} blank name(s), at line(s) {shown}: remove them or name "
                           f"the tag")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        shown = ", ".join(repr(n) for n in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        raise TagFileError(f"{origin} names {len(repeated)} tag(s) more than once ({shown}): each line must "
                           f"name a different tag")


def read_thresholds(source: str | Path | Sequence[float] | np.ndarray, expected: int) -> np.ndarray:
    """Per-class thresholds aligned with a tag list of ``expected`` names, each checked (0 <= t <= 1)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        values = []
        for number, line in enumerate(read_text_file(path, "threshold file").splitlines(), 1):
            if line.strip():
                try:
                    value = float(line)
                except ValueError:
                    raise TagFileError(f"{path}:{number}: {line.strip()!r} is not a number") from None
                if not (np.isfinite(value) and 0.0 <= value <= 1.0):
                    raise TagFileError(f"{path}:{number}: {line.strip()!r} is not a valid threshold "
                                       f"({THRESHOLD_RULE})")
                values.append(value)
        thresholds = np.asarray(values, dtype=np.float32)
        origin = str(path)
    else:
        try:
            thresholds = np.asarray(source, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise TagFileError("thresholds must be numbers (one per tag)") from None
        origin = "thresholds"
        check_thresholds(thresholds, origin)
    if thresholds.shape[0] != expected:
        raise TagFileError(f"{origin} has {thresholds.shape[0]} values but the tag list has {expected} tags")
    return thresholds


def write_thresholds(path: str | Path, thresholds: Sequence[float] | np.ndarray) -> Path:
    """Upstream's format, one value per line aligned with the tag list, each in the shortest form that reads
    back to the same float32 (rounding could move a tuned threshold across a score)."""
    values = np.asarray(thresholds, dtype=np.float32)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError("thresholds must be a 1-D array of finite numbers")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(np.format_float_positional(v, unique=True, trim="-") for v in values)
    path.write_text(text + "\n", encoding="utf-8")
    return path
