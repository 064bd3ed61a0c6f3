"""Benchmark of the comparison statistics: DeLong (Sun & Xu midranks) and the vectorised paired bootstrap.

    python benchmarks/stats.py          # DeLong on 100,000 paired predictions; 2,000 resamples of 10,000
    python benchmarks/stats.py --tiny   # seconds-scale smoke run

Prints wall times and, as ratios measured in the same run, how they compare with scikit-learn's
`roc_auc_score` on the same data (DeLong: one AUC pair; bootstrap: a per-resample sklearn loop,
extrapolated from a sample of resamples). Targets on 2 cores: DeLong < 1 s, bootstrap < 10 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from renalmae.stats.bootstrap import cluster_weights, paired_bootstrap
from renalmae.stats.delong import delong_test


def _paired_predictions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.33).astype(np.int64)
    logit_a = 1.6 * y_true - 0.8 + rng.normal(size=n)
    logit_b = 0.6 * logit_a + 0.8 * y_true - 0.4 + rng.normal(size=n)
    p_a, p_b = 1.0 / (1.0 + np.exp(-logit_a)), 1.0 / (1.0 + np.exp(-logit_b))
    return y_true, np.c_[1 - p_a, p_a], np.c_[1 - p_b, p_b]


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="small sizes for a quick smoke run")
    args = parser.parse_args(argv)
    n_delong, n_bootstrap, resamples = (5_000, 1_000, 200) if args.tiny else (100_000, 10_000, 2_000)

    y_true, probs_a, probs_b = _paired_predictions(n_delong, seed=0)
    result, delong_seconds = _timed(delong_test, y_true, probs_a[:, 1], probs_b[:, 1])
    _, sklearn_seconds = _timed(
        lambda: (roc_auc_score(y_true, probs_a[:, 1]), roc_auc_score(y_true, probs_b[:, 1]))
    )
    print(
        f"DeLong, {n_delong:,} paired predictions: {delong_seconds:.3f} s "
        f"(AUC {result.auc_a:.4f} vs {result.auc_b:.4f}, z = {result.z:.2f}, p = {result.p_value:.2e}); "
        f"{delong_seconds / sklearn_seconds:.2f} x the time of two sklearn AUCs"
    )

    y_true, probs_a, probs_b = _paired_predictions(n_bootstrap, seed=1)
    boot, bootstrap_seconds = _timed(
        paired_bootstrap, y_true, probs_a, probs_b, resamples=resamples, confidence=0.95, seed=0
    )
    sample = 20
    weights = cluster_weights(y_true, None, sample, np.random.default_rng(0))  # images resampled by class

    def sklearn_loop():
        for row in weights:
            for probs in (probs_a, probs_b):
                roc_auc_score(y_true, probs[:, 1], sample_weight=row)
                f1_score(y_true, probs[:, 1] >= 0.5, sample_weight=row)

    _, loop_seconds = _timed(sklearn_loop)
    loop_estimate = loop_seconds / sample * resamples
    print(
        f"paired stratified bootstrap, {resamples:,} resamples of {n_bootstrap:,}: {bootstrap_seconds:.2f} s "
        f"(AUC difference {boot.auc_difference.estimate:.4f}, 95 % CI {boot.auc_difference.low:.4f} to "
        f"{boot.auc_difference.high:.4f}); a per-resample sklearn loop: about {loop_estimate:.1f} s "
        f"({loop_estimate / bootstrap_seconds:.1f} x slower)"
    )
    targets = (1.0, 10.0)
    if not args.tiny:
        for name, seconds, target in zip(
            ("DeLong", "bootstrap"), (delong_seconds, bootstrap_seconds), targets, strict=True
        ):
            status = "within" if seconds < target else "OVER"
            print(f"{name}: {status} the {target:g} s target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
