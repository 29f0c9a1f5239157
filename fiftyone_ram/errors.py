"""The base of every error a user can fix (a missing file, a bad option, a field name that is taken).

Its message is one line that names the file, field or option and says what is wrong; the command line prints
that line and exits with status 2 instead of a traceback. Anything else that escapes is a bug. Each error
class also keeps its Python base (``ValueError``, ``RuntimeError``) so that callers catching those still work.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the input, fixable by the user; ``str(error)`` is one line."""


class OptionError(UserError, ValueError):
    """An argument or option value that cannot work (a threshold of 1.5, an unknown language, ...)."""


def user_message(exc: BaseException) -> str | None:
    """The one line a user reads for ``exc`` when the input or the environment caused it (None: a bug, whose
    traceback is kept). Besides :class:`UserError`: a file the user named that cannot be read, and FiftyOne's
    database not answering (stopped, or gone during the run). The command line and the App both use this."""
    if isinstance(exc, UserError):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        return _one_line(f"{exc.filename}: {exc.strerror or exc}")
    exc = _database_error(exc)
    if exc is not None:
        first = str(exc).split(",")[0].split("\n")[0][:160]
        return (f"FiftyOne's database does not answer ({type(exc).__name__}: {first}): start it again (or check "
                f"FIFTYONE_DATABASE_URI), then run again with resume; what was written is kept")
    return None


def database_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says FiftyOne's database stopped answering: then a failing run writes nothing more (each
    write would wait pymongo's 30 s for nothing) and leaves its leases to expire."""
    return _database_error(exc) is not None


def _database_error(exc: BaseException) -> BaseException | None:
    """pymongo's error under ``exc`` when it is the database not answering, else None."""
    while isinstance(exc, ConnectionError) and isinstance(exc.__cause__, Exception):  # FiftyOne wraps pymongo's
        exc = exc.__cause__
    try:
        from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError
    except ImportError:  # pragma: no cover
        return None
    return exc if isinstance(exc, (ServerSelectionTimeoutError, ConnectionFailure, AutoReconnect)) else None


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())
