"""Where the released weights and upstream data files come from, and where they are cached.

Everything is pinned: data files by upstream commit and sha256, weights by Hugging Face repository and
sha256. Nothing is downloaded when the file is already in the cache or an explicit path is given.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

UPSTREAM_REPO = "xinyu1205/recognize-anything"
UPSTREAM_COMMIT = "7cb804a8609e9f4b1a50b7f31436d2df40bb9481"
_RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


class AssetError(RuntimeError):
    """A required file is missing and cannot be fetched; the message says where to put it."""


@dataclass(frozen=True)
class UpstreamFile:
    name: str
    path: str  # inside the upstream repository
    sha256: str


UPSTREAM_FILES: dict[str, UpstreamFile] = {
    f.name: f
    for f in (
        UpstreamFile("ram_tag_list.txt", "ram/data/ram_tag_list.txt",
                     "5d96d2f7225527480ad773aaac76b6e5c08a18adf6eae9ca7d2ab923d5e7bd8b"),
        UpstreamFile("ram_tag_list_chinese.txt", "ram/data/ram_tag_list_chinese.txt",
                     "c912657a0f30be7b2f5df6ccffa17e1d84561d0bea508528e38b6d0d711bcfbe"),
        UpstreamFile("ram_tag_list_threshold.txt", "ram/data/ram_tag_list_threshold.txt",
                     "b6f81d0de1bc7f9c251af512c413eae976c77dbfbadf700d4e3d90510f4c6447"),
        UpstreamFile("tag2text_ori_tag_list.txt", "ram/data/tag2text_ori_tag_list.txt",
                     "7d05c7cb88ed46a2aee1434776964f6bdbda0c0f4233c8633e109084382d3a45"),
        UpstreamFile("openimages_common_214_ram_taglist.txt",
                     "datasets/openimages_common_214/openimages_common_214_ram_taglist.txt",
                     "3b2ec80fc92178b1e672a087a1e8c034ba3008dcb48dcfa5b2a38641077fc6cb"),
        UpstreamFile("openimages_common_214_ram_annots.txt",
                     "datasets/openimages_common_214/openimages_common_214_ram_annots.txt",
                     "f54429fd57ee9798aee2c7511a28b080998672a91886510ea2e7b60a785ad6cc"),
        UpstreamFile("openimages_rare_200_ram_taglist.txt",
                     "datasets/openimages_rare_200/openimages_rare_200_ram_taglist.txt",
                     "8a173d0132907fa88451de2370d2dc4efee6807b952dfe6eeb9e77eeea2315cf"),
        UpstreamFile("openimages_rare_200_ram_annots.txt",
                     "datasets/openimages_rare_200/openimages_rare_200_ram_annots.txt",
                     "6a6f87480aaf86083131c632573c6ea302ca1dced29fbe5274254364fc1305a2"),
        UpstreamFile("openimages_rare_200_llm_tag_descriptions.json",
                     "datasets/openimages_rare_200/openimages_rare_200_llm_tag_descriptions.json",
                     "b65f1cdf4506df0efe987a8178f06c076e38ea5be5432355a00d12ac0db296e7"),
        # Read (never imported) for its 63 open-set prompt templates: see fiftyone_ram/vocabulary/templates.py.
        UpstreamFile("openset_utils.py", "ram/utils/openset_utils.py",
                     "1fcc52482e77736adc5d53a38ab6bf447c6506690b6c13208ffbf45ced80e687"),
    )
}


@dataclass(frozen=True)
class ReleasedWeights:
    filename: str
    repo_id: str
    repo_type: str  # "model" or "space"
    size: int | None
    sha256: str | None


RELEASED_WEIGHTS: dict[str, ReleasedWeights] = {
    "ram_plus_swin_large_14m": ReleasedWeights(
        "ram_plus_swin_large_14m.pth", "xinyu1205/recognize-anything-plus-model", "model", 3_010_210_801,
        "497c178836ba66698ca226c7895317e6e800034be986452dbd2593298d50e87d"),
    "ram_swin_large_14m": ReleasedWeights(
        "ram_swin_large_14m.pth", "xinyu1205/recognize_anything_model", "model", 5_625_634_877,
        "15c729c793af28b9d107c69f85836a1356d76ea830d4714699fb62e55fcc08ed"),
    # The Space re-uploaded this file twice in March 2023; its hash is checked only when known to match.
    "tag2text_swin_14m": ReleasedWeights(
        "tag2text_swin_14m.pth", "xinyu1205/recognize-anything", "space", None, None),
}


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
    url = _RAW_URL.format(repo=UPSTREAM_REPO, commit=UPSTREAM_COMMIT, path=spec.path)
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
    return ram_home() / "weights" / RELEASED_WEIGHTS[name].filename


def download_weights(name: str, *, download: bool = True) -> Path:
    """Fetch a released checkpoint from Hugging Face (resumable) and check its size and sha256."""
    if name not in RELEASED_WEIGHTS:
        raise AssetError(f"no released weights for {name!r}; known: {', '.join(RELEASED_WEIGHTS)}")
    spec = RELEASED_WEIGHTS[name]
    target = weights_path(name)
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return target
    source = f"https://huggingface.co/{'spaces/' if spec.repo_type == 'space' else ''}{spec.repo_id}"
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
