"""Fine-tuning RAM, RAM++ and Tag2Text: upstream's objective (``objective``) and the training loop over a
FiftyOne view (``finetune``). Names load on first use so that importing the package stays cheap."""

from __future__ import annotations

from fiftyone_ram.lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.training.trainer import FinetuneResult, finetune  # noqa: F401
    from fiftyone_ram.training.objective import total_loss, training_losses  # noqa: F401
    from fiftyone_ram.training.settings import WEAK_START, FinetuneSettings  # noqa: F401

_EXPORTS = {"training_losses": "objective", "total_loss": "objective", "finetune": "trainer",
            "FinetuneResult": "trainer", "FinetuneSettings": "settings", "WEAK_START": "settings"}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
