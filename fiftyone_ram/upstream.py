"""The upstream recognize-anything files this project reads at run time, pinned by commit and sha256.

Facts only (no downloading: see :mod:`fiftyone_ram.assets`). Nothing here is copied into the project; the
files are fetched from the pinned commit on first use and checked against these hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

UPSTREAM_REPO = "xinyu1205/recognize-anything"
#: The text Tag2Text's captioner starts every caption with (upstream's prompt; stripped from the output).
CAPTION_PROMPT = "a picture of "
UPSTREAM_COMMIT = "7cb804a8609e9f4b1a50b7f31436d2df40bb9481"
_RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class UpstreamFile:
    name: str
    path: str  # inside the upstream repository
    sha256: str

    @property
    def url(self) -> str:
        return _RAW_URL.format(repo=UPSTREAM_REPO, commit=UPSTREAM_COMMIT, path=self.path)


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
