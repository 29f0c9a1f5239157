"""The RAM paradigm on your own data as one recorded pipeline: captions → tags → a first model → generate and
clean → review → retrain → fine-tune → evaluate, round after round (see docs/pipeline.md).

``run(spec)`` runs it (``resume=True`` continues where it stopped), ``report(dataset, prefix)`` reads its
per-round report, ``undo(dataset, prefix)`` puts the current tags back to the round before.

The functions ``run`` and ``report`` share their names with the modules that hold them, so they are imported
here, eagerly: importing a submodule binds its name on the package only the first time, and these imports
rebind the names to the functions after that (the modules stay in ``sys.modules``; import from them by their
full names). None of them imports FiftyOne or torch at import time.
"""

from __future__ import annotations

from fiftyone_ram.pipeline.spec import PipelineError, PipelineJob, load_spec
from fiftyone_ram.pipeline.report import report
from fiftyone_ram.pipeline.run import PipelineResult, run, undo

__all__ = ["PipelineError", "PipelineJob", "PipelineResult", "load_spec", "report", "run", "undo"]
