"""Caption fields of a FiftyOne dataset to ``Classifications`` of parsed tags (ground truth or training signal)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fiftyone_ram.labels.caption_parser import CaptionParser, load_parser

CHUNK = 1000  # samples parsed between progress reports


def parse_caption_field(
    samples,
    caption_field: str,
    label_field: str,
    *,
    parser: CaptionParser | None = None,
    tag_list: Path | str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> int:
    """Parse ``caption_field`` (a string or a list of strings per sample) of a dataset or view into a
    ``Classifications`` field; a sample without captions gets None. Returns the number of samples written.

    ``parser`` defaults to :func:`load_parser` of ``tag_list`` (RAM's label system when None).
    """
    import fiftyone as fo

    parser = parser or load_parser(tag_list)
    names = parser.label_system.names
    captions = samples.values(caption_field)
    labels = []
    for start in range(0, len(captions), CHUNK):
        for value in captions[start : start + CHUNK]:
            texts = [value] if isinstance(value, str) else [text for text in value or () if text]
            if not texts:
                labels.append(None)
                continue
            tags = [names[i] for i in parser.parse(texts)]
            labels.append(fo.Classifications(classifications=[fo.Classification(label=t) for t in tags]))
        if progress is not None:
            done = min(start + CHUNK, len(captions))
            progress(done / max(len(captions), 1), f"parsed {done:,} of {len(captions):,} samples")
    samples.set_values(label_field, labels)
    return len(labels)
