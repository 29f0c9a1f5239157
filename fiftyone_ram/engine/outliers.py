"""Wrong-tag detection by clustering region embeddings: the RAM data engine's K-Means++ step, made explicit.

The paper clusters each category's region crops with K-Means++ and drops "the outlying 10%"; it leaves k, the
features and the outlier rule open. The choices here, and why:

1. **Geometry.** Rows are L2-normalised (cosine geometry, as CLIP-style embeddings are compared). With three or
   more categories they are first centred on the mean of the category means and normalised again: image
   embeddings share a large common direction (every crop is "a photo"), which hides the differences that
   matter; centring on category means (not row means) keeps big categories from defining the origin.
2. **k per category** by the silhouette score of K-Means++ (scikit-learn, ``n_init`` restarts, fixed seed) for
   k = 2..``k_max`` on a PCA projection of the category (``pca_dim``; fast, and k-means distances are
   dominated by the leading directions anyway); k = 1 when no k reaches ``min_silhouette`` or the category
   has fewer than ``2 * min_rows_per_cluster`` rows. K-Means++ is good at isolating wrong tags into their own
   small clusters, so k often exceeds the number of true modes: that is wanted, see 3.
3. **Which clusters are real modes of the category.** Wrong tags are regions of *other* categories (or junk)
   filed under this one, so their clusters are small and either incoherent or sitting on another category's
   mode. A cluster is *trusted* unless it has fewer than ``min_cluster_size`` rows, or it holds at most
   ``suspect_share * fraction`` of its category and either the median silhouette of its rows against the
   other categories' clusters is below ``min_cluster_silhouette``, or its centre lies within the typical
   radius of a mode of another category that holds a bigger share of its own category. Only other-category
   clusters holding at least ``share_ratio`` times this cluster's share are compared, so the small clumps
   that this category's rows form inside *other* categories (their wrong tags) do not make its real modes
   look shared. An untrusted cluster is split in two and its halves judged again (a real mode merged with
   junk is recovered).
4. **Score** of a row: cosine distance to the nearest trusted centre of its category divided by that
   cluster's median distance (a robust per-cluster scale, so that loose modes are not penalised): about 1 for
   typical members.
5. **Decision** (``rule="adaptive"``, the default): the inlier spread is estimated robustly (median and MAD of
   log-scores after trimming the top ``fraction``); a row is flagged when its score is beyond ``z`` spreads
   (``"far"``), or beyond ``z_lenient`` spreads when it lies in an untrusted cluster (``"outlying_cluster"``)
   or inside a trusted mode of another category (``"foreign"``). At most ``cap * fraction`` of the rows are
   flagged. So ``fraction`` is the *expected* share of wrong tags, not a quota: 5 % or 15 % of injected noise
   is found with the default 10 %. ``rule="quota"`` is the paper's literal rule: the top ``fraction`` of each
   category by score.

   A row flagged only as ``"far"`` that has ``companions`` rows of its own category within
   ``companion_radius`` scales is kept: a small real mode without a centre of its own, not a stray.
   Scales are floored at ``min_scale`` (cosine distance) so that near-duplicate crops do not make every
   other crop infinitely far.

Small categories: fewer than ``min_cluster_size`` rows cannot be judged on their own and are flagged only as
``"foreign"``; fewer than ``2 * min_rows_per_cluster`` rows are one cluster (k = 1) around a trimmed centre.
``cross_category=False`` judges each category alone (the paper's per-category setting): use it when
categories overlap (hypernyms such as "animal" and "dog" share their regions). Everything is deterministic
for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

OUTLIER_REASONS = ("far", "outlying_cluster", "foreign", "quota")
_EPS = 1e-6


#: How outliers are decided (see the module docstring).
OUTLIER_RULES = ("adaptive", "quota")


@dataclass(frozen=True)
class OutlierOptions:
    """Every knob of :func:`score_outliers`; defaults are what the synthetic checks were tuned with."""

    seed: int = 0
    rule: str = "adaptive"  # or "quota" (paper: the top `fraction` of each category)
    center: bool | None = None  # None: centre when there are >= 3 categories
    cross_category: bool = True  # compare clusters and rows with other categories' modes
    k_max: int = 8
    min_rows_per_cluster: int = 8  # k <= rows // this
    min_silhouette: float = 0.1  # below this for every k >= 2: k = 1
    n_init: int = 3
    pca_dim: int = 32
    min_cluster_size: int = 3
    suspect_share: float = 2.5  # clusters above suspect_share * fraction of their category are always trusted
    min_cluster_silhouette: float = 0.1
    share_ratio: float = 0.5
    z: float = 4.0
    z_lenient: float = 2.0
    cap: float = 2.0  # at most cap * fraction of the rows flagged
    min_scale: float = 1e-3  # cosine distance: near-duplicate crops would make every other row infinitely far
    companions: int = 1  # a "far" row with this many own-category rows nearby is a small mode, kept (0: off)
    companion_radius: float = 1.5  # "nearby": within this many times the reference cluster's scale

    def __post_init__(self) -> None:
        if self.rule not in OUTLIER_RULES:
            raise ValueError(f"rule must be one of {', '.join(OUTLIER_RULES)}, not {self.rule!r}")


@dataclass
class Cluster:
    """One K-Means cluster of one category (``rows`` index the input)."""

    category: str
    rows: np.ndarray
    centre: np.ndarray  # unit vector
    scale: float  # median cosine distance of the members to the centre
    share: float  # of its category's rows
    silhouette: float = 1.0  # median, against other categories' clusters
    trusted: bool = True

    @property
    def size(self) -> int:
        return len(self.rows)


@dataclass
class OutlierReport:
    """What :func:`score_outliers` found: per row a flag, a score and a reason ("" when not flagged)."""

    flags: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    clusters: list[Cluster]
    k: dict[str, int]
    thresholds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.flags)


def find_outliers(embeddings: np.ndarray, categories: Sequence[str], fraction: float = 0.1,
                  **options) -> np.ndarray:
    """Boolean (N,) array: True for rows whose category looks wrong for their embedding.

    ``embeddings``: (N, D) region embeddings; ``categories``: N category names. ``options``: the fields of
    :class:`OutlierOptions` (``seed``, ``rule``, ``k_max``, ...). See the module docstring for the method.
    """
    return score_outliers(embeddings, categories, fraction, **options).flags


def score_outliers(embeddings: np.ndarray, categories: Sequence[str], fraction: float = 0.1,
                   **options) -> OutlierReport:
    """:func:`find_outliers` with the scores, reasons, clusters and thresholds behind the flags."""
    opts = OutlierOptions(**options)
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"fraction must be in (0, 0.5), not {fraction}")
    X = np.asarray(embeddings, dtype=np.float64)
    cats = np.asarray([str(c) for c in categories], dtype=object)
    if X.ndim != 2 or len(X) != len(cats):
        raise ValueError(f"expected (N, D) embeddings and N categories; got {X.shape} and {len(cats)}")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or infinite values")
    n = len(X)
    if n == 0:
        return OutlierReport(np.zeros(0, bool), np.zeros(0), np.zeros(0, dtype=object), [], {})
    groups = _group_rows(cats)
    X = _geometry(X, groups, opts)

    # Per-category problems are small: threads cost more than they give (10x slower measured on 2 shared
    # cores). threadpoolctl limits only the libraries already loaded, hence the imports first.
    import sklearn.cluster  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import sklearn.metrics  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        clusters = [c for name, rows in groups.items() for c in _cluster_category(X, rows, name, opts)]
        _judge_clusters(X, clusters, fraction, opts)
        clusters = _split_untrusted(X, clusters, fraction, opts)

    scores, untrusted, scorable, ref_scale = _scores(X, clusters, opts.min_scale)
    elsewhere = _elsewhere(X, groups, clusters, opts.min_scale) if opts.cross_category else np.full(n, np.inf)
    if opts.rule == "quota":
        flags, reasons, thresholds = _quota(scores, groups, fraction)
    else:
        flags, reasons, thresholds = _adaptive(scores, scorable, untrusted, elsewhere, fraction, opts)
        if opts.companions:
            kept = _with_companions(X, cats, groups, np.flatnonzero(reasons == "far"), ref_scale, opts)
            flags[kept], reasons[kept] = False, ""
    k = {name: 0 for name in groups}
    for cluster in clusters:
        k[cluster.category] += 1
    return OutlierReport(flags, scores, reasons, clusters, k, thresholds)


# -- steps ----------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _group_rows(cats: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices per category, categories in order of first appearance (one sort, not one scan each)."""
    names, first, inverse = np.unique(cats.astype(str), return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1]
    rows = dict(zip(names.tolist(), np.split(order, bounds)))
    return {str(names[i]): rows[str(names[i])] for i in np.argsort(first)}


def _geometry(X: np.ndarray, groups: dict[str, np.ndarray], opts: OutlierOptions) -> np.ndarray:
    X = _unit(X)
    center = len(groups) >= 3 if opts.center is None else opts.center
    if center and len(groups) >= 2:
        origin = np.mean([X[rows].mean(0) for rows in groups.values()], axis=0)
        X = _unit(X - origin)
    return X


def _make_cluster(X: np.ndarray, rows: np.ndarray, name: str, total: int) -> Cluster:
    centre = _unit(X[rows].sum(0))
    return Cluster(name, rows, centre, float(np.median(1.0 - X[rows] @ centre)), len(rows) / total)


def _choose_labels(Z: np.ndarray, opts: OutlierOptions) -> np.ndarray:
    """K-Means++ labels for the k in 2..k_max with the best silhouette; all zeros when k = 1 is better."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(Z)
    best, best_score = np.zeros(n, dtype=int), opts.min_silhouette
    for k in range(2, min(opts.k_max, n // opts.min_rows_per_cluster) + 1):
        labels = KMeans(k, init="k-means++", n_init=opts.n_init, random_state=opts.seed).fit(Z).labels_
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(Z, labels, sample_size=min(n, 1000), random_state=opts.seed)
        if score > best_score:
            best, best_score = labels, score
    return best


def _project(X: np.ndarray, opts: OutlierOptions) -> np.ndarray:
    dim = min(opts.pca_dim, len(X) - 1, X.shape[1])
    if dim < X.shape[1] and dim >= 2:
        from sklearn.decomposition import PCA

        return PCA(dim, random_state=opts.seed).fit_transform(X)
    return X


def _cluster_category(X: np.ndarray, rows: np.ndarray, name: str, opts: OutlierOptions) -> list[Cluster]:
    total = len(rows)
    if total < 2 * opts.min_rows_per_cluster:
        return [_trimmed_cluster(X, rows, name)]
    labels = _choose_labels(_project(X[rows], opts), opts)
    return [_make_cluster(X, rows[labels == j], name, total) for j in np.unique(labels)]


def _trimmed_cluster(X: np.ndarray, rows: np.ndarray, name: str) -> Cluster:
    """One cluster around a centre recomputed without the rows beyond twice the median distance: with a
    handful of rows, one wrong tag would otherwise pull the mean towards itself."""
    cluster = _make_cluster(X, rows, name, len(rows))
    if len(rows) >= 4:
        dist = 1.0 - X[rows] @ cluster.centre
        core = rows[dist <= 2 * np.median(dist) + _EPS]
        cluster.centre = _unit(X[core].sum(0))
        cluster.scale = float(np.median(1.0 - X[rows] @ cluster.centre))
    return cluster


def _judge_clusters(X: np.ndarray, clusters: list[Cluster], fraction: float, opts: OutlierOptions,
                    which: Sequence[Cluster] | None = None) -> None:
    """Set ``silhouette`` and ``trusted`` of ``which`` (all clusters by default); see the module docstring."""
    which = list(clusters if which is None else which)
    means = np.array([X[c.rows].mean(0) for c in clusters])
    cats = np.array([c.category for c in clusters], dtype=object)
    shares = np.array([c.share for c in clusters])
    position = {id(c): i for i, c in enumerate(clusters)}
    for cluster in which:
        others = (cats != cluster.category) if opts.cross_category else np.zeros(len(clusters), bool)
        if not others.any():  # one category: compare with its other clusters
            others = cats == cluster.category
            others[position[id(cluster)]] = False
        cluster.silhouette = _silhouette(X, cluster, means, others & (shares >= opts.share_ratio * cluster.share),
                                         others)
    # Modes that may absorb a small cluster: other categories' clusters that look like modes themselves.
    modes = np.array([c.silhouette >= opts.min_cluster_silhouette and c.size >= opts.min_cluster_size
                      for c in clusters])
    centres = np.array([c.centre for c in clusters])
    scales = np.maximum(np.array([c.scale for c in clusters]), opts.min_scale)
    for cluster in which:
        cluster.trusted = cluster.size >= opts.min_cluster_size
        if not cluster.trusted or cluster.share > opts.suspect_share * fraction:
            continue
        if cluster.silhouette < opts.min_cluster_silhouette:
            cluster.trusted = False
        elif opts.cross_category:
            # Its centre within the typical radius of a mode of another category holding a bigger share of
            # it: a clump of that category's regions (a few rows' silhouette is too noisy to say so alone).
            bigger = modes & (cats != cluster.category) & (shares > cluster.share)
            cluster.trusted = not bool(bigger.any() and (
                (1.0 - centres[bigger] @ cluster.centre) <= scales[bigger]).any())


def _silhouette(X: np.ndarray, cluster: Cluster, means: np.ndarray, candidates: np.ndarray,
                fallback: np.ndarray) -> float:
    """Median silhouette of the cluster's rows against the nearest candidate cluster (by mean distance)."""
    if cluster.size < 2:
        return 0.0
    if not candidates.any():
        candidates = fallback
    if not candidates.any():
        return 1.0
    members = X[cluster.rows]
    a = 1.0 - (members @ X[cluster.rows].sum(0) - 1.0) / (cluster.size - 1)
    b = (1.0 - members @ means[candidates].T).min(1)
    return float(np.median((b - a) / np.maximum(np.maximum(a, b), 1e-12)))


def _split_untrusted(X: np.ndarray, clusters: list[Cluster], fraction: float, opts: OutlierOptions,
                     depth: int = 2) -> list[Cluster]:
    """Split each untrusted cluster in two and judge the halves: K-Means sometimes merges a real (loose)
    mode with the scattered wrong tags around it, and the mix then looks like junk."""
    from sklearn.cluster import KMeans

    for _ in range(depth):
        out, new = [], []
        for cluster in clusters:
            if cluster.trusted or cluster.size < 2 * opts.min_rows_per_cluster:
                out.append(cluster)
                continue
            labels = KMeans(2, init="k-means++", n_init=opts.n_init, random_state=opts.seed).fit(
                X[cluster.rows]).labels_
            if len(np.unique(labels)) < 2:
                out.append(cluster)
                continue
            total = round(cluster.size / cluster.share)
            halves = [_make_cluster(X, cluster.rows[labels == j], cluster.category, total) for j in (0, 1)]
            out.extend(halves)
            new.extend(halves)
        clusters = out
        if not new:
            break
        _judge_clusters(X, clusters, fraction, opts, which=new)
    return clusters


def _scores(X: np.ndarray, clusters: list[Cluster], min_scale: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: distance to the nearest trusted centre of its category over that cluster's scale; whether
    the row sits in an untrusted cluster; whether it could be scored at all (its category has a trusted
    cluster) and the scale of its nearest trusted cluster."""
    n = len(X)
    scores, untrusted, scorable = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    ref_scale = np.ones(n)
    by_category: dict[str, list[Cluster]] = {}
    for cluster in clusters:
        untrusted[cluster.rows] = not cluster.trusted
        by_category.setdefault(cluster.category, []).append(cluster)
    for own in by_category.values():
        trusted = [c for c in own if c.trusted]
        if not trusted:
            continue
        rows = np.concatenate([c.rows for c in own])
        pooled = float(np.median(np.concatenate([1.0 - X[c.rows] @ c.centre for c in trusted])))
        centres = np.array([c.centre for c in trusted])
        # A median over fewer than five members is noise: small clusters use their category's pooled scale.
        scales = np.array([max(c.scale if c.size >= 5 else pooled, min_scale) for c in trusted])
        ratio = (1.0 - X[rows] @ centres.T) / scales
        nearest = ratio.argmin(1)
        scores[rows] = ratio[np.arange(len(rows)), nearest]
        ref_scale[rows] = scales[nearest]
        scorable[rows] = True
    return scores, untrusted, scorable, ref_scale


def _elsewhere(X: np.ndarray, groups: dict[str, np.ndarray], clusters: list[Cluster], min_scale: float
               ) -> np.ndarray:
    """Per row, its score against the nearest trusted mode of *another* category (inf when none)."""
    modes = [c for c in clusters if c.trusted and c.size >= 5]
    elsewhere = np.full(len(X), np.inf)
    if not modes:
        return elsewhere
    index = {name: i for i, name in enumerate(groups)}
    code = np.empty(len(X), dtype=np.int64)
    for name, rows in groups.items():
        code[rows] = index[name]
    centres = np.array([c.centre for c in modes])
    scales = np.array([max(c.scale, min_scale) for c in modes])
    mode_code = np.array([index[c.category] for c in modes])
    for start in range(0, len(X), 4096):  # bounded memory: rows x modes per chunk
        block = slice(start, start + 4096)
        z = (1.0 - X[block] @ centres.T) / scales
        z[code[block, None] == mode_code[None, :]] = np.inf
        elsewhere[block] = z.min(1)
    return elsewhere


def _with_companions(X: np.ndarray, cats: np.ndarray, groups: dict[str, np.ndarray], rows: np.ndarray,
                     ref_scale: np.ndarray, opts: OutlierOptions) -> np.ndarray:
    """Of ``rows`` (flagged as far from every mode), those with ``companions`` rows of their own category
    nearby: a small real mode that K-Means did not give a centre (small categories get k = 1), not a stray."""
    keep = []
    for row in rows:
        own = groups[str(cats[row])]
        dist = 1.0 - X[own] @ X[row]
        close = np.count_nonzero(dist <= opts.companion_radius * ref_scale[row]) - 1  # minus itself
        if close >= opts.companions:
            keep.append(row)
    return np.asarray(keep, dtype=int)


def _adaptive(scores: np.ndarray, scorable: np.ndarray, untrusted: np.ndarray, elsewhere: np.ndarray,
              fraction: float, opts: OutlierOptions) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    n = len(scores)
    reasons = np.full(n, "", dtype=object)
    if not scorable.any():
        return np.zeros(n, bool), reasons, {}
    logs = np.log(np.maximum(scores, _EPS))
    judged = logs[scorable]
    core = judged[judged <= np.quantile(judged, 1.0 - fraction)]
    middle = float(np.median(core))
    spread = max(1.4826 * float(np.median(np.abs(core - middle))), 1e-3)
    strict, lenient = middle + opts.z * spread, middle + opts.z_lenient * spread
    cap = float(np.quantile(judged, 1.0 - opts.cap * fraction))
    # Inside another category's mode (within the lenient cut there) and closer to it than to its own modes.
    inside = np.log(np.maximum(elsewhere, _EPS)) <= lenient
    foreign = inside & (~scorable | (elsewhere < scores))
    far = scorable & (logs > strict)
    suspicious = scorable & (untrusted | foreign) & (logs > lenient)
    flags = (far | suspicious) & (logs > cap)
    reasons[flags & untrusted] = "outlying_cluster"
    reasons[flags & foreign & ~untrusted] = "foreign"
    reasons[flags & (reasons == "")] = "far"
    # Rows of categories too small to judge are flagged only when they sit inside another category's mode.
    lone = ~scorable & foreign
    flags |= lone
    reasons[lone] = "foreign"
    thresholds = {"strict": float(np.exp(strict)), "lenient": float(np.exp(lenient)), "cap": float(np.exp(cap))}
    return flags, reasons, thresholds


def _quota(scores: np.ndarray, groups: dict[str, np.ndarray], fraction: float
           ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    flags = np.zeros(len(scores), bool)
    for rows in groups.values():
        count = int(round(fraction * len(rows)))
        if count:
            flags[rows[np.argsort(-scores[rows], kind="stable")[:count]]] = True
    reasons = np.where(flags, "quota", "").astype(object)
    return flags, reasons, {}
