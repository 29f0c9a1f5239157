"""Progress of a fine-tuning run: a console line (step, epoch, loss, lr, images/s) or a callback (see
:mod:`fiftyone_ram.progress`, which every long run shares)."""

from fiftyone_ram.progress import ConsoleProgress, Progress, resolve_progress

__all__ = ["ConsoleProgress", "Progress", "resolve_progress"]
