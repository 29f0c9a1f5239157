"""One process of a pipeline's training stage under ``torchrun`` (``python -m fiftyone_ram.pipeline.launch
PAYLOAD``): the stage's views are rebuilt from the spec, as the pipeline built them, and the fine-tuning job runs
in DDP (:mod:`fiftyone_ram.training.distributed`); the main process writes the model folder.

The payload (a JSON file the pipeline writes) holds the spec, the stage, the fine-tuning job's settings and the
model's spec: plain values, so every process, on any machine that reaches the database and the files, builds
the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import fiftyone as fo

    from fiftyone_ram.pipeline.run import views_of
    from fiftyone_ram.pipeline.spec import load_spec
    from fiftyone_ram.tagger_spec import TaggerSpec
    from fiftyone_ram.training.job import FinetuneJob

    args = sys.argv[1:] if argv is None else argv
    payload = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    job = load_spec(payload["spec"])
    views = views_of(fo.load_dataset(job.dataset), job)
    finetune = FinetuneJob.from_values(payload["finetune"])
    samples = views.verified if payload["stage"] == "finetune" else views.engine
    finetune.run(samples, TaggerSpec.from_dict(payload["model"]), validation=views.validation, progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
