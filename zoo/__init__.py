"""Hooks of the ``fiftyone-ram/recognize-anything`` remote zoo source (RAM, RAM++, Tag2Text).

FiftyOne executes this file by path on every zoo call, and DataLoader workers cannot import it, so it only
forwards to the installed ``fiftyone_ram`` package (``pip install fiftyone-ram``).
"""


def _package(module: str):
    import importlib

    try:
        return importlib.import_module(f"fiftyone_ram.fiftyone.{module}")
    except ImportError as exc:
        raise ImportError(
            "The Recognize Anything zoo models need the fiftyone-ram package: pip install fiftyone-ram "
            f"(import failed: {exc})") from exc


def download_model(model_name, model_path):
    """Downloads the released weights of ``model_name`` to ``model_path``."""
    _package("zoo").download_model(model_name, model_path)


def load_model(model_name, model_path, **kwargs):
    """Loads the model. Keywords: ``checkpoint_path``, ``config``, ``family``, ``tag_list``,
    ``tag_list_chinese``, ``thresholds``, ``confidence_thresh`` (or ``threshold``), ``classes``,
    ``language``, ``device``, ``caption``, ``caption_options``; a custom vocabulary: ``tags``,
    ``descriptions``, ``keep_builtin``, ``new_tag_threshold``, ``tag_thresholds``, ``text_encoder``."""
    return _package("zoo").load_model(model_name, model_path, **kwargs)


def resolve_input(model_name, ctx):
    """The model's options for the App's "Apply zoo model" form."""
    return _package("zoo").resolve_input(model_name, ctx)


def parse_parameters(model_name, ctx, params):
    """Turns the form's values (``params``, changed in place) into ``load_model`` keywords."""
    _package("zoo").parse_parameters(model_name, ctx, params)
