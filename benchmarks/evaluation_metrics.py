"""Speed and memory of the tag-evaluation metrics, and the end-to-end cost of ``evaluate_tags``.

Part 1: RAM's 4585 classes × 20,000 samples with 1% positives. mAP plus P/R at per-class thresholds from
arrays, ours against (a) a per-class scikit-learn loop (``average_precision_score`` per class, P/R with
one ``precision_recall_fscore_support`` call) and (b) a plain vectorised argsort over the whole array.
Peak memory is the largest extra allocation while a method runs (``tracemalloc`` sees numpy's
allocations), on top of the inputs, measured in a separate run. Our methods are timed as the best of 3
runs, the baselines (tens of seconds each) once. Two score distributions: uniform (every score can outrank a positive:
the worst case for us) and model-like (positives score high, most negatives low).

Part 2: ``evaluate_tags`` on a 10,000-sample FiftyOne dataset (predicted tags with confidences; optionally
with the 4585-logit vectors stored), recording the run with its per-sample and per-label fields.

    python benchmarks/evaluation_metrics.py                 # everything (~2-3 min on 2 cores)
    python benchmarks/evaluation_metrics.py --quick         # sklearn loop on 500 classes, extrapolated
    python benchmarks/evaluation_metrics.py --skip-dataset  # part 1 only
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

import numpy as np

N_SAMPLES, N_CLASSES, RATE = 20_000, 4585, 0.01
REPEAT = 3  # runs of each of our (few-second) methods; the slow baselines run once


def make_arrays(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.random((N_SAMPLES, N_CLASSES), dtype=np.float32) < RATE
    if kind == "uniform":
        scores = rng.random((N_SAMPLES, N_CLASSES), dtype=np.float32)
    else:
        scores = rng.beta(1.0, 30.0, (N_SAMPLES, N_CLASSES)).astype(np.float32)
        pos = np.nonzero(targets)
        scores[pos] = rng.beta(4.0, 2.0, len(pos[0])).astype(np.float32)
    thresholds = rng.uniform(0.6, 0.9, N_CLASSES).astype(np.float32)
    return scores, targets, thresholds


def timed(fn, *args, repeat: int = 1, **kwargs):
    """Result and the best of ``repeat`` wall times (the machine is shared; the minimum is least noisy)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return out, best


def peak_mib(fn, *args, **kwargs) -> float:
    """Largest extra allocation while ``fn`` runs; a separate run, since tracing slows allocations down."""
    gc.collect()
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def ours(scores, targets, thresholds):
    from fiftyone_ram.evaluation.metrics import evaluate_arrays

    r = evaluate_arrays(scores, targets, thresholds=thresholds)
    return r.mAP, r.summary["CP"], r.summary["CR"]


def ours_sklearn_ties(scores, targets, thresholds):
    from fiftyone_ram.evaluation.metrics import evaluate_arrays

    r = evaluate_arrays(scores, targets, thresholds=thresholds, ties="sklearn")
    return r.mAP, r.summary["CP"], r.summary["CR"]


def sklearn_loop(scores, targets, thresholds, classes=None):
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    cols = range(scores.shape[1]) if classes is None else range(classes)
    ap = [average_precision_score(targets[:, k], scores[:, k]) for k in cols]
    p, r, _, _ = precision_recall_fscore_support(targets, scores >= thresholds, average=None, zero_division=0)
    return float(np.mean(ap)), float(p.mean()), float(r.mean())


def argsort_vectorised(scores, targets, thresholds):
    """Upstream's formula on a full argsort of every column at once (the 'obvious' vectorisation)."""
    order = np.argsort(-scores, axis=0)
    hits = np.take_along_axis(targets, order, axis=0)
    precision = np.cumsum(hits, axis=0) / np.arange(1, len(scores) + 1)[:, None]
    ap = (precision * hits).sum(0) / hits.sum(0)
    pred = scores >= thresholds
    tp = (pred & targets).sum(0)
    return float(ap.mean()), float((tp / np.maximum(pred.sum(0), 1)).mean()), float((tp / targets.sum(0)).mean())


def part1(quick: bool) -> list[list[str]]:
    from fiftyone_ram.evaluation.metrics import top_k_counts

    rows = []
    for kind in ("uniform", "model-like"):
        scores, targets, thr = make_arrays(kind)
        f_scores = np.asfortranarray(scores)
        if quick:
            (_, _, _), t_sk = timed(sklearn_loop, scores, targets, thr, classes=500)
            t_sk *= N_CLASSES / 500
            m_sk, sk_note = float("nan"), "(500 classes, extrapolated)"
        else:
            (m_sk, _, _), t_sk = timed(sklearn_loop, scores, targets, thr)
            sk_note = ""
        (m_ours, _, _), t_ours = timed(ours, scores, targets, thr, repeat=REPEAT)
        (m_skt, _, _), t_skt = timed(ours_sklearn_ties, scores, targets, thr, repeat=REPEAT)
        _, t_f = timed(ours, f_scores, targets, thr, repeat=REPEAT)
        _, t_topk = timed(top_k_counts, scores, targets, (1, 3, 5), repeat=REPEAT)
        (m_arg, _, _), t_arg = timed(argsort_vectorised, scores, targets, thr)
        rows += [
            [kind, "ours (mAP + P/R), C-order input", f"{t_ours:.2f}", f"{t_sk / t_ours:.1f}x",
             f"{peak_mib(ours, scores, targets, thr):.0f}", f"mAP {m_ours:.6f} (ties pessimistic)"],
            [kind, "ours, ties='sklearn'", f"{t_skt:.2f}", f"{t_sk / t_skt:.1f}x", "",
             f"mAP {m_skt:.6f}; |diff to sklearn| {abs(m_skt - m_sk):.1e}"],
            [kind, "ours, Fortran-order input", f"{t_f:.2f}", f"{t_sk / t_f:.1f}x",
             f"{peak_mib(ours, f_scores, targets, thr):.0f}", ""],
            [kind, "ours, top-1/3/5 P/R", f"{t_topk:.2f}", "",
             f"{peak_mib(top_k_counts, scores, targets, (1, 3, 5)):.0f}", ""],
            [kind, f"per-class sklearn loop {sk_note}", f"{t_sk:.2f}", "1.0x", "", f"mAP {m_sk:.6f}"],
            [kind, "vectorised argsort", f"{t_arg:.2f}", f"{t_sk / t_arg:.1f}x",
             f"{peak_mib(argsort_vectorised, scores, targets, thr):.0f}", f"mAP {m_arg:.6f}"],
        ]
        del scores, targets, f_scores
        gc.collect()
    return rows


def part2(with_logits: bool, n: int = 10_000) -> list[list[str]]:
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    import fiftyone as fo

    from fiftyone_ram.evaluation import evaluate_tags

    rng = np.random.default_rng(1)
    model_tags = [f"tag{i:04d}" for i in range(N_CLASSES)]
    gt_vocab = rng.choice(N_CLASSES, 1000, replace=False)
    rows = []
    ds = fo.Dataset()
    try:
        t0 = time.perf_counter()
        samples = []
        for i in range(n):
            gt = rng.choice(gt_vocab, rng.integers(1, 7), replace=False)
            logits = rng.normal(-4.0, 1.5, N_CLASSES).astype(np.float32)
            logits[gt] += 4.0
            probs = 1 / (1 + np.exp(-logits))
            keep = np.flatnonzero(probs > 0.5)
            pred = fo.Classifications(
                classifications=[fo.Classification(label=model_tags[j], confidence=float(probs[j])) for j in keep],
                logits=logits if with_logits else None,
            )
            truth = fo.Classifications(classifications=[fo.Classification(label=model_tags[j]) for j in gt])
            samples.append(fo.Sample(filepath=f"/tmp/bench/{i}.jpg", ram=pred, gt=truth))
            if len(samples) == 1000:
                ds.add_samples(samples, progress=False)
                samples = []
        build = time.perf_counter() - t0
        n_pred = ds.count("ram.classifications")
        n_gt = ds.count("gt.classifications")
        for key in (None, "bench"):
            results, t = timed(evaluate_tags, ds, "ram", "gt", eval_key=key, model_tags=model_tags)
            rows.append([f"{n} samples, {'logits + ' if with_logits else ''}confidences",
                         f"eval_key={key!r}", f"{t:.2f}",
                         f"{results.summary['num_classes']} classes, {n_gt} GT / {n_pred} predicted tags, "
                         f"mAP {results.summary['mAP']:.4f} (dataset built in {build:.0f} s)"])
        t0 = time.perf_counter()
        ds.load_evaluation_results("bench", cache=False)
        rows.append(["", "load_evaluation_results", f"{time.perf_counter() - t0:.2f}", ""])
    finally:
        ds.delete()
    return rows


def main() -> None:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="time the sklearn loop on 500 classes only")
    parser.add_argument("--skip-dataset", action="store_true", help="skip the FiftyOne end-to-end part")
    parser.add_argument("--skip-logits", action="store_true", help="skip the dataset variant with stored logits")
    parser.add_argument("--skip-arrays", action="store_true", help="skip part 1")
    args = parser.parse_args()

    if not args.skip_arrays:
        print(f"Part 1: {N_CLASSES} classes x {N_SAMPLES} samples, {RATE:.0%} positives, float32, "
              f"numpy {np.__version__}")
        print(tabulate(part1(args.quick), headers=["scores", "method", "seconds", "speed-up", "peak extra MiB",
                                                   "check"]))
    if args.skip_dataset:
        return
    print("\nPart 2: evaluate_tags end to end (read labels, map, metrics, write fields, save the run)")
    rows = part2(with_logits=False)
    if not args.skip_logits:
        rows += part2(with_logits=True)
    print(tabulate(rows, headers=["dataset", "call", "seconds", "notes"]))


if __name__ == "__main__":
    main()
