"""Loading the data engine's Hugging Face models (Grounding-DINO, CLIP): :mod:`fiftyone_ram.pretrained`, which
every layer that loads a hub model shares, under the engine's name."""

from fiftyone_ram.pretrained import ModelUnavailableError, load_pretrained

__all__ = ["ModelUnavailableError", "load_pretrained"]
