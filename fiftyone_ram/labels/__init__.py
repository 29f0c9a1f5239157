"""Label systems and caption-to-tag parsing (NLTK + WordNet).

Imported lazily: NLTK takes seconds to import, and ``fiftyone_ram.labels.wordnet`` must stay cheap for the
set-up script.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.labels.caption_parser import CaptionParser, load_parser  # noqa: F401
    from fiftyone_ram.labels.dataset_captions import parse_caption_field  # noqa: F401
    from fiftyone_ram.labels.label_system import LabelSystem  # noqa: F401
    from fiftyone_ram.labels.synonyms import with_caption_synonyms, wordnet_synonyms  # noqa: F401
    from fiftyone_ram.labels.vocabulary_builder import build_label_system  # noqa: F401
    from fiftyone_ram.labels.wordnet import ensure_wordnet, load_wordnet  # noqa: F401

_EXPORTS = {
    "CaptionParser": "caption_parser",
    "load_parser": "caption_parser",
    "parse_caption_field": "dataset_captions",
    "LabelSystem": "label_system",
    "with_caption_synonyms": "synonyms",
    "wordnet_synonyms": "synonyms",
    "build_label_system": "vocabulary_builder",
    "ensure_wordnet": "wordnet",
    "load_wordnet": "wordnet",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
