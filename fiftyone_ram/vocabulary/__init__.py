"""Custom vocabularies: a subset of a tagger's tags, new tags (CLIP text embeddings, as upstream's open set),
or both. What is asked is a :class:`VocabularySpec`: ``load_tagger(..., vocabulary=VocabularySpec(tags=...))``,
or ``build_vocabulary(tagger, tags=...)`` then ``tagger.with_vocabulary(vocabulary)``.

The names load on first use: the spec (what the command line and the forms are built from) imports no torch.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.vocabulary.cache import EmbeddingCache  # noqa: F401
    from fiftyone_ram.vocabulary.sources import read_descriptions, read_tags  # noqa: F401
    from fiftyone_ram.vocabulary.spec import OPEN_SET_THRESHOLD, VocabularySpec  # noqa: F401
    from fiftyone_ram.vocabulary.text_encoder import DEFAULT_TEXT_ENCODER, TextEncoder, TextEncoderError  # noqa: F401
    from fiftyone_ram.vocabulary.vocabulary import Vocabulary, build_vocabulary  # noqa: F401

_EXPORTS = {
    "EmbeddingCache": "cache", "read_descriptions": "sources", "read_tags": "sources",
    "OPEN_SET_THRESHOLD": "spec", "VocabularySpec": "spec", "DEFAULT_TEXT_ENCODER": "text_encoder",
    "TextEncoder": "text_encoder", "TextEncoderError": "text_encoder", "Vocabulary": "vocabulary",
    "build_vocabulary": "vocabulary",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
