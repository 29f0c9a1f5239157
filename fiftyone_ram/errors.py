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
