"""AUC and the paired statistics that compare two classifiers on the same images.

AUC with its undefined cases, DeLong, McNemar, paired bootstrap, Wilcoxon over folds, Holm's correction.
Only what scipy and scikit-learn do not provide is written here; everything else wraps them.
"""

from renalmae.stats.auc import AUC, inference_undefined, roc_auc
from renalmae.stats.bootstrap import Interval, PairedBootstrap, cluster_weights, paired_bootstrap
from renalmae.stats.delong import DeLongResult, delong_test, delong_test_ovr
from renalmae.stats.mcnemar import McNemarResult, mcnemar_exact
from renalmae.stats.multiple import holm, relative_improvement
from renalmae.stats.wilcoxon import WilcoxonResult, wilcoxon_folds

__all__ = [
    "AUC",
    "DeLongResult",
    "Interval",
    "McNemarResult",
    "PairedBootstrap",
    "WilcoxonResult",
    "cluster_weights",
    "delong_test",
    "delong_test_ovr",
    "holm",
    "inference_undefined",
    "mcnemar_exact",
    "paired_bootstrap",
    "relative_improvement",
    "roc_auc",
    "wilcoxon_folds",
]
