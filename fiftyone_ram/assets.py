"""Fetching the released weights and upstream data files, and where they are cached.

What is fetched is pinned elsewhere: data files in :mod:`fiftyone_ram.upstream` (commit and sha256), weights
in :mod:`fiftyone_ram.models.registry` (Hugging Face repository, size, sha256). Nothing is downloaded when the
file is already in the cache or an explicit path is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    target = ram_home() / "upstream" / UPSTREAM_COMMIT[:7] / name
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
    if spec.sha256 is not None:  # just checked: the first load need not read the file again
        stat = target.stat()
        _VerifiedCache().put(CheckpointIdentity(str(target.resolve()), stat.st_size, spec.sha256, "sha256"), stat)
    return target


# -- checkpoint verification ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointIdentity:
    """What a checkpoint is, independently of where it lies: ``fingerprint`` is the released sha256, the
    sha256 of a zip checkpoint's CRC table, or the file's sha256 (torch's legacy format has no CRCs)."""

    path: str
    size: int
    fingerprint: str
    verified_by: str  # "sha256" (a released file, against the registry), "crc32" (zip entries), "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_checkpoint(path: str | Path) -> CheckpointIdentity:
    """Check a checkpoint once, at its first use, and remember the result (keyed by path, size and mtime), so
    that later loads cost one ``stat``.

    A released file in the cache is checked against the registry's sha256; any other zip checkpoint (torch's
    format since 1.6) against the CRC-32 of every entry, which covers each tensor's bytes. A damaged file
    raises :class:`~fiftyone_ram.models.checkpoint.CheckpointError` naming it. A file that is not a checkpoint
    at all is left for the loader to describe.
    """
    from fiftyone_ram.models import checkpoint as ckpt

    path = Path(path)
    try:
        stat = path.stat()
        resolved = str(path.resolve())
    except (OSError, RuntimeError):  # missing, a symlink loop...: the loader says what is wrong
        return CheckpointIdentity(str(path), 0, "", "none")
    cache = _VerifiedCache()
    known = cache.get(resolved, stat)
    if known is not None:
        return known
    released = _released_sha256(path)
    if released is not None:
        actual = sha256_of(path)
        if actual != released:
            raise ckpt.CheckpointError(f"checkpoint {path} is damaged: its sha256 {actual[:12]}... is not the "
                                       f"released {released[:12]}...; delete it and download it again")
        identity = CheckpointIdentity(resolved, stat.st_size, actual, "sha256")
    elif zipfile.is_zipfile(path):
        bad = ckpt.zip_crc_failure(path)
        if bad is not None:
            raise ckpt.CheckpointError(f"checkpoint {path} is damaged: entry {bad} fails its CRC-32 check "
                                       f"(copy or download the file again)")
        identity = CheckpointIdentity(resolved, stat.st_size, ckpt.zip_fingerprint(path), "crc32")
    elif stat.st_size:
        identity = CheckpointIdentity(resolved, stat.st_size, sha256_of(path), "none")
    else:
        return CheckpointIdentity(resolved, 0, "", "none")
    cache.put(identity, stat)
    return identity


def _released_sha256(path: Path) -> str | None:
    """The pinned sha256 when ``path`` is where a released checkpoint is cached."""
    from fiftyone_ram.models.registry import default_cfgs

    for name, cfg in default_cfgs.items():
        if cfg.weights.sha256 and _same_file(path, weights_path(name)):
            return cfg.weights.sha256
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


class _VerifiedCache:
    """``verified.json`` in the cache root: resolved path -> size, mtime and identity of a checked file.

    Written whole to a temporary file and renamed, so concurrent runs never read half a file (one of two
    simultaneous updates may be lost: that file is then checked again next time)."""

    def __init__(self) -> None:
        self.path = ram_home() / "verified.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, resolved: str, stat: os.stat_result) -> CheckpointIdentity | None:
        entry = self._read().get(resolved)
        if not isinstance(entry, dict) or (entry.get("size"), entry.get("mtime_ns")) != (stat.st_size,
                                                                                         stat.st_mtime_ns):
            return None
        try:
            return CheckpointIdentity(resolved, stat.st_size, entry["fingerprint"], entry["verified_by"])
        except KeyError:
            return None

    def put(self, identity: CheckpointIdentity, stat: os.stat_result) -> None:
        data = self._read()
        data[identity.path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                               "fingerprint": identity.fingerprint, "verified_by": identity.verified_by}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp",
                                             encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(f.name, self.path)
        except OSError:  # a read-only cache: the file is checked again next time, nothing else is lost
            pass
