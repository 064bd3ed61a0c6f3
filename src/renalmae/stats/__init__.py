"""Paired statistics comparing two classifiers on the same images: DeLong, McNemar, bootstrap, Wilcoxon, Holm.

Only what scipy and scikit-learn do not provide is written here; everything else wraps them.
"""

from renalmae.stats.bootstrap import Interval, PairedBootstrap, paired_bootstrap, stratified_indices
from renalmae.stats.delong import DeLongResult, delong_test, delong_test_ovr
from renalmae.stats.mcnemar import McNemarResult, mcnemar_exact
from renalmae.stats.multiple import holm, relative_improvement
from renalmae.stats.wilcoxon import WilcoxonResult, wilcoxon_folds

__all__ = [
    "DeLongResult",
    "Interval",
    "McNemarResult",
    "PairedBootstrap",
    "WilcoxonResult",
    "delong_test",
    "delong_test_ovr",
    "holm",
    "mcnemar_exact",
    "paired_bootstrap",
    "relative_improvement",
    "stratified_indices",
    "wilcoxon_folds",
]
