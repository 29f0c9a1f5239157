"""Custom vocabularies: a subset of a tagger's tags, new tags (CLIP text embeddings, as upstream's open set),
or both. What is asked is a :class:`VocabularySpec`: ``load_tagger(..., vocabulary=VocabularySpec(tags=...))``,
or ``build_vocabulary(tagger, tags=...)`` then ``tagger.with_vocabulary(vocabulary)``."""

from fiftyone_ram.vocabulary.cache import EmbeddingCache
from fiftyone_ram.vocabulary.sources import read_descriptions, read_tags
from fiftyone_ram.vocabulary.spec import VocabularySpec
from fiftyone_ram.vocabulary.text_encoder import DEFAULT_TEXT_ENCODER, TextEncoder, TextEncoderError
from fiftyone_ram.vocabulary.vocabulary import OPEN_SET_THRESHOLD, Vocabulary, build_vocabulary

__all__ = ["DEFAULT_TEXT_ENCODER", "EmbeddingCache", "OPEN_SET_THRESHOLD", "TextEncoder", "TextEncoderError",
           "Vocabulary", "VocabularySpec", "build_vocabulary", "read_descriptions", "read_tags"]
