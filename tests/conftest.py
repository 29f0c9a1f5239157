"""Shared test set-up: an isolated FiftyOne database and home folders, and the paths of ../shared."""

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "parity"
UPSTREAM = SHARED / "upstream"

# FiftyOne reads its configuration when first imported, so the isolation must be set up before that.
_TMP = Path(tempfile.mkdtemp(prefix="fiftyone-ram-tests-"))
os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"fiftyone_ram_tests_{os.getpid()}")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_TMP / "datasets")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = str(_TMP / "zoo")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_TMP / "plugins")
os.environ["FIFTYONE_RAM_HOME"] = str(_TMP / "ram-home")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
(_TMP / "plugins").mkdir(parents=True, exist_ok=True)
# The plugin is installed the way developers do it: a link from the plugins folder to the checkout.
os.symlink(ROOT, _TMP / "plugins" / "fiftyone-ram", target_is_directory=True)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"missing test data: {PARITY} (see ../shared/README.md)")
    return PARITY


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    if not UPSTREAM.is_dir():
        pytest.fail(f"missing test data: {UPSTREAM} (see ../shared/README.md)")
    return UPSTREAM


@pytest.fixture(scope="session")
def tmp_home() -> Path:
    return _TMP


def pytest_sessionfinish(session, exitstatus):
    """Drop the per-run database and folders so repeated runs leave nothing behind."""
    import shutil
    import sys

    shutil.rmtree(_TMP, ignore_errors=True)
    if "fiftyone" not in sys.modules:
        return
    try:
        import fiftyone.core.odm as foo

        foo.get_db_client().drop_database(os.environ["FIFTYONE_DATABASE_NAME"])
    except Exception:  # the database may never have been started
        pass
