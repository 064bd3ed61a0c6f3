"""Non-inferiority of one model's AUC to another's on the same images, from DeLong's standard error.

H0: AUC(candidate) - AUC(reference) <= -margin; H1: the candidate is worse by less than the margin.
The candidate is non-inferior when the lower bound of the one-sided (1 - alpha) confidence interval of
the difference, difference - z(1 - alpha) x SE, lies above -margin; superior when it lies above 0.
This is the one-sided z-test of H0 at level alpha (p = 1 - Phi((difference + margin) / SE)). SE is
DeLong's (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837-845) for the paired AUCs, clustered by
patient or clip as Obuchowski (1997, Biometrics 53:567-578) when groups are given; the design
follows the non-inferiority test of two correlated ROC areas in Zhou, Obuchowski & McClish (2011),
*Statistical Methods in Diagnostic Medicine*, 2nd ed., Wiley, ch. 5. When DeLong's test is undefined
(too few images of a class, perfect separation, zero variance; see `renalmae.stats.delong`) nothing is
concluded: both `non_inferior` and `superior` are False and `undefined` says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scipy.special import ndtr, ndtri

from renalmae.stats.delong import delong_test


@dataclass(frozen=True)
class NonInferiority:
    """Outcome of the non-inferiority test; `difference` = AUC(candidate) - AUC(reference)."""

    auc_candidate: float | None
    auc_reference: float | None
    difference: float | None
    std_error: float | None
    lower_bound: float | None
    """Lower bound of the one-sided (1 - alpha) confidence interval of `difference`."""
    p_value: float | None
    """One-sided p of H0: difference <= -margin."""
    margin: float
    alpha: float
    non_inferior: bool
    superior: bool
    undefined: str | None = None
    images: int = 0
    clusters: int = 0
    """Independent units the standard error was estimated from (= `images` without groups)."""

    def to_dict(self) -> dict:
        return asdict(self)


def noninferiority_test(
    y_true, scores_candidate, scores_reference, margin: float, alpha: float, groups=None
) -> NonInferiority:
    """Is the candidate's AUC at most `margin` below the reference's, at one-sided level `alpha`?

    y_true: (n,) 0/1 labels; scores_*: (n,) scores of the same images (higher = more likely positive).
    groups: (n,) cluster ids (patient, clip) or None for independent images.
    margin: the non-inferiority margin in AUC points (>= 0); alpha in (0, 1). Raises ValueError on
    mismatched shapes or an invalid margin / alpha.
    """
    if margin < 0 or not 0 < alpha < 1:
        raise ValueError(f"margin must be >= 0 and alpha in (0, 1) (got {margin}, {alpha})")
    delong = delong_test(y_true, scores_candidate, scores_reference, groups=groups)
    if not delong.defined:
        return NonInferiority(
            delong.auc_a, delong.auc_b, delong.difference, None, None, None, margin, alpha, False, False,
            delong.undefined, delong.images, delong.clusters,
        )  # fmt: skip
    lower_bound = delong.difference - ndtri(1.0 - alpha) * delong.std_error
    p_value = float(ndtr(-(delong.difference + margin) / delong.std_error))
    return NonInferiority(
        auc_candidate=delong.auc_a,
        auc_reference=delong.auc_b,
        difference=delong.difference,
        std_error=delong.std_error,
        lower_bound=float(lower_bound),
        p_value=p_value,
        margin=margin,
        alpha=alpha,
        non_inferior=bool(lower_bound > -margin),
        superior=bool(lower_bound > 0.0),
        images=delong.images,
        clusters=delong.clusters,
    )
