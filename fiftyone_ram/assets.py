"""Fetching the released weights and upstream data files, and where they are cached.

What is fetched is pinned elsewhere: data files in :mod:`fiftyone_ram.upstream` (commit and sha256), weights
in :mod:`fiftyone_ram.models.registry` (Hugging Face repository, size, sha256). Nothing is downloaded when the
file is already in the cache or an explicit path is given.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fiftyone_ram.errors import UserError
from fiftyone_ram.upstream import UPSTREAM_COMMIT, UPSTREAM_FILES


class AssetError(UserError, RuntimeError):
    """A required file is missing and cannot be fetched; the message says where to put it."""


def ram_home() -> Path:
    """Cache root: $FIFTYONE_RAM_HOME, else a folder in FiftyOne's model zoo directory."""
    env = os.environ.get("FIFTYONE_RAM_HOME")
    if env:
        return Path(env).expanduser()
    zoo_dir = os.environ.get("FIFTYONE_MODEL_ZOO_DIR")
    if not zoo_dir:
        try:
            import fiftyone as fo

            zoo_dir = fo.config.model_zoo_dir
        except Exception:  # FiftyOne not importable: fall back to its default location
            zoo_dir = str(Path.home() / "fiftyone" / "__models__")
    return Path(zoo_dir).expanduser() / "fiftyone-ram"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def upstream_file(name: str, *, download: bool = True) -> Path:
    """Local path of a pinned upstream data file, downloaded into the cache on first use."""
    try:
        spec = UPSTREAM_FILES[name]
    except KeyError:
        raise AssetError(f"unknown upstream file {name!r}; known: {', '.join(sorted(UPSTREAM_FILES))}") from None
    target = upstream_target(name)
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    url = spec.url
    if not download:
        raise AssetError(_missing_message(name, target, url))
    try:
        _download_url(url, target, spec.sha256)
    except Exception as exc:
        raise AssetError(_missing_message(name, target, url) + f" (download failed: {exc})") from exc
    return target


def upstream_target(name: str) -> Path:
    """Where a pinned upstream data file is cached (put it there by hand on an offline machine)."""
    return ram_home() / "upstream" / UPSTREAM_COMMIT[:7] / name


def missing_upstream_message(names: list[str]) -> str:
    """One line for upstream data files that could not be fetched: which ones, the folder to put them in
    and where they come from (the App shows errors as one toast; a line per URL would fill the screen)."""
    folder = upstream_target(names[0]).parent
    source = UPSTREAM_FILES[names[0]].url.rsplit("/", 1)[0]
    if len(names) == 1:
        return (f"{names[0]} is missing and could not be downloaded: put it in {folder}/ (from {source}/) "
                f"or give its path")
    return (f"{' and '.join([', '.join(names[:-1]), names[-1]])} are missing and could not be downloaded: put "
            f"them in {folder}/ (from {source}/) or give their paths")


def _missing_message(name: str, target: Path, url: str) -> str:
    return f"{name} is not available: download {url} and put it at {target}, or pass its path explicitly"


def _download_url(url: str, target: Path, sha256: str) -> None:
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with requests.get(url, timeout=60, stream=True) as response:
        response.raise_for_status()
        with open(partial, "wb") as f:
            for block in response.iter_content(1 << 20):
                f.write(block)
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise AssetError(f"{url}: sha256 {actual} does not match the pinned {sha256}")
    partial.replace(target)


def weights_path(name: str) -> Path:
    """Where the released checkpoint of a named model is cached."""
    from fiftyone_ram.models.registry import get_variant

    return ram_home() / "weights" / get_variant(name).weights.filename


def download_weights(name: str, *, download: bool = True) -> Path:
    """Fetch a released checkpoint from Hugging Face (resumable) and check its size and sha256."""
    from fiftyone_ram.models.registry import ConfigError, get_variant

    try:
        spec = get_variant(name).weights
    except ConfigError as exc:
        raise AssetError(f"no released weights for {name!r}: {exc}") from None
    target = weights_path(name)
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return target
    source = spec.page
    if not download:
        raise AssetError(
            f"weights {spec.filename} are not available: download them from {source} and put them at "
            f"{target}, or pass the checkpoint path explicitly")
    from huggingface_hub import hf_hub_download

    try:
        # hf_hub_download resumes interrupted downloads from its .incomplete file.
        fetched = Path(hf_hub_download(spec.repo_id, spec.filename, repo_type=spec.repo_type,
                                       local_dir=target.parent))
    except Exception as exc:
        raise AssetError(
            f"could not download {spec.filename} from {source} ({exc}); put the file at {target} "
            f"or pass the checkpoint path explicitly") from exc
    if spec.sha256 is not None and sha256_of(fetched) != spec.sha256:
        raise AssetError(f"{fetched}: sha256 does not match the released {spec.sha256}; delete it and retry")
    if fetched != target:
        fetched.replace(target)
    return target
