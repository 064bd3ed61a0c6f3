"""AUC and the paired statistics that compare two classifiers on the same images.

AUC with its undefined cases (`auc`), DeLong (`delong`), McNemar (`mcnemar`), paired bootstrap
(`bootstrap`), Wilcoxon over folds (`wilcoxon`), Holm's correction (`multiple`). Only what scipy and
scikit-learn do not provide is written here; everything else wraps them. Import from the submodule:
this package imports nothing, so code that needs one statistic does not depend on the others.
"""
