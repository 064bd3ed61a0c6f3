"""Calibration of the comparison's tests on clustered data where the two models are equally good.

    python benchmarks/calibration.py          # 2,000 simulations (bootstrap: 400), about 3 minutes
    python benchmarks/calibration.py --tiny   # 100 simulations (bootstrap: 20), seconds

Prints the share of tests at alpha 0.05 that call two equally good models different, frame-level (every
frame independent) against clustered (`renalmae.stats.simulation`: 60 clips of 1-15 frames). A calibrated
test is near 0.05; these are the rates docs/results.md quotes. Exits 0.
"""

from __future__ import annotations

import argparse

import numpy as np

from renalmae.stats.bootstrap import paired_bootstrap
from renalmae.stats.delong import delong_test
from renalmae.stats.mcnemar import mcnemar_test
from renalmae.stats.simulation import clustered_set, equally_good_scores


def _probabilities(scores: np.ndarray) -> np.ndarray:
    positive = 1.0 / (1.0 + np.exp(-scores))
    return np.c_[1.0 - positive, positive]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="100 simulations: a smoke run")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    simulations, bootstraps = (100, 20) if args.tiny else (2000, 400)
    rng = np.random.default_rng(args.seed)
    rejected = {name: [0, 0] for name in ("DeLong", "McNemar", "bootstrap")}  # [frame-level, clustered]
    for simulation in range(simulations):
        y, groups = clustered_set(rng)
        a, b = equally_good_scores(rng, y, groups), equally_good_scores(rng, y, groups)
        correct_a, correct_b = (a >= 0.5) == y, (b >= 0.5) == y
        for side, g in enumerate((None, groups)):
            rejected["DeLong"][side] += delong_test(y, a, b, groups=g).p_value < 0.05
            rejected["McNemar"][side] += mcnemar_test(correct_a, correct_b, g).p_value < 0.05
            if simulation < bootstraps:
                interval = paired_bootstrap(
                    y, _probabilities(a), _probabilities(b), groups=g, resamples=500, seed=simulation
                ).auc_difference
                rejected["bootstrap"][side] += not interval.low <= 0.0 <= interval.high
    print("false-positive rate at alpha 0.05, equally good models, 60 clips of 1-15 frames")
    print(f"{'test':12s} {'simulations':>11s} {'frame-level':>12s} {'clustered':>10s}")
    for name, (frames, clustered) in rejected.items():
        n = bootstraps if name == "bootstrap" else simulations
        print(f"{name:12s} {n:11d} {frames / n:12.3f} {clustered / n:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
