"""Clustered inference: Obuchowski's AUC test, the cluster bootstrap, the clustered McNemar and the
repeats test, checked against a reference implementation, a large cluster bootstrap and simulations.

Reference: `doAUCcluster` of the FDA's iMRMC R package (github.com/DIDSR/iMRMC, R/doAUCcluster.R), itself
an adaptation of the Cleveland Clinic's `funcs_clusteredROC.R` by Obuchowski's group. `reference_clustered`
below is a literal, loop-by-loop translation of its two-curve branch (O(n^2), kernel by kernel), so the
fast midrank version in `renalmae.stats.delong` is checked against the published formulas, not itself.

Calibration: on simulated clustered data where the two models are equally good (frames of one clip share
the clip's effect), a test at alpha = 0.05 should reject about 5 % of the time. The rates are printed
(`pytest -s`) and asserted with the Monte-Carlo error of the number of simulations in mind.
"""

import numpy as np
import pytest
from scipy.stats import chi2, norm

from renalmae.stats.bootstrap import cluster_weights, paired_bootstrap
from renalmae.stats.delong import delong_test
from renalmae.stats.mcnemar import mcnemar_test
from renalmae.stats.noninferiority import noninferiority_test
from renalmae.stats.repeats import auc_covariance, repeats_test
from renalmae.stats.simulation import clustered_set, equally_good_scores


def reference_clustered(predictor1, predictor2, response, cluster_id):
    """iMRMC's doAUCcluster (two correlated ROC curves), translated statement by statement."""

    def kern(x1, x0):
        return 1.0 if x1 > x0 else (0.5 if x1 == x0 else 0.0)

    present, absent = response == 1, response == 0
    ids = list(dict.fromkeys(cluster_id.tolist()))
    big_i = len(ids)
    i01 = len(set(cluster_id[absent].tolist()))
    i10 = len(set(cluster_id[present].tolist()))
    m = np.array([np.sum((cluster_id == c) & present) for c in ids])
    n = np.array([np.sum((cluster_id == c) & absent) for c in ids])
    big_m, big_n = m.sum(), n.sum()

    def auc(p):
        return sum(kern(x, y) for x in p[present] for y in p[absent]) / (big_m * big_n)

    def components(p):
        xs, ys = np.zeros(big_i), np.zeros(big_i)
        for i, c in enumerate(ids):
            xs[i] = sum(np.mean([kern(x, y) for y in p[absent]]) for x in p[(cluster_id == c) & present])
            ys[i] = sum(np.mean([kern(x, y) for x in p[present]]) for y in p[(cluster_id == c) & absent])
        return xs, ys

    auc1, auc2 = auc(predictor1), auc(predictor2)
    x1, y1 = components(predictor1)
    x2, y2 = components(predictor2)
    a1, a2 = x1 - m * auc1, x2 - m * auc2
    b1, b2 = y1 - n * auc1, y2 - n * auc2
    s10 = lambda u, v: i10 / ((i10 - 1) * big_m) * np.sum(u * v)  # noqa: E731
    s01 = lambda u, v: i01 / ((i01 - 1) * big_n) * np.sum(u * v)  # noqa: E731
    s11 = lambda u, v: big_i / (big_i - 1) * np.sum(u * v)  # noqa: E731
    var_1 = s10(a1, a1) / big_m + s01(b1, b1) / big_n + 2 * s11(a1, b1) / (big_m * big_n)
    var_2 = s10(a2, a2) / big_m + s01(b2, b2) / big_n + 2 * s11(a2, b2) / (big_m * big_n)
    cov_12 = s10(a1, a2) / big_m + s01(b1, b2) / big_n + (s11(a1, b2) + s11(a2, b1)) / (big_m * big_n)
    var_difference = var_1 + var_2 - 2 * cov_12
    p = 2 * (1 - norm.cdf(abs(auc1 - auc2) / np.sqrt(var_difference)))
    return auc1, auc2, var_1, var_2, cov_12, var_difference, p


def test_obuchowski_matches_the_reference_implementation_on_clustered_data_with_ties():
    rng = np.random.default_rng(7)
    y, groups = clustered_set(rng, clusters=25, mean_size=4)
    groups = np.where(rng.random(len(y)) < 0.1, groups[::-1], groups)  # a few clips with both classes
    a = np.round(equally_good_scores(rng, y, groups), 1)  # rounded: ties across and within clips
    b = np.round(0.5 * equally_good_scores(rng, y, groups), 1)
    auc1, auc2, var_1, var_2, cov_12, var_difference, p = reference_clustered(a, b, y, groups)
    result = delong_test(y, a, b, groups=groups)
    assert (result.auc_a, result.auc_b) == pytest.approx((auc1, auc2), abs=1e-12)
    assert result.std_error**2 == pytest.approx(var_difference, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    aucs, covariance = auc_covariance(y, np.stack([a, b]), groups)
    assert covariance == pytest.approx(np.array([[var_1, cov_12], [cov_12, var_2]]), rel=1e-9)
    assert result.clusters == len(np.unique(groups)) and result.images == len(y)


def test_one_image_per_cluster_is_delongs_test_exactly():
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    a, b = y + rng.normal(size=200), 0.7 * y + rng.normal(size=200)
    unclustered = delong_test(y, a, b)
    singletons = delong_test(y, a, b, groups=np.arange(200).astype(str))
    assert singletons.std_error == pytest.approx(unclustered.std_error, rel=1e-12)
    assert singletons.p_value == pytest.approx(unclustered.p_value, rel=1e-9)


def test_obuchowski_standard_error_agrees_with_a_large_cluster_bootstrap():
    rng = np.random.default_rng(11)
    y, groups = clustered_set(rng, clusters=80)
    a, b = equally_good_scores(rng, y, groups), 0.8 * equally_good_scores(rng, y, groups)
    to_probs = lambda s: np.c_[1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))]  # noqa: E731
    boot = paired_bootstrap(y, to_probs(a), to_probs(b), groups=groups, resamples=4000, seed=0)
    result = delong_test(y, a, b, groups=groups)
    width = boot.auc_difference.high - boot.auc_difference.low
    assert width == pytest.approx(2 * 1.96 * result.std_error, rel=0.15)
    frame_level = delong_test(y, a, b)
    assert result.std_error > 1.8 * frame_level.std_error  # frames of a clip are not independent


def test_a_cluster_bootstrap_resample_draws_whole_clusters_and_keeps_each_strata_count():
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1, 0])
    groups = np.array(["a", "a", "b", "c", "c", "d", "e", "e", "e"])  # e holds both classes
    weights = cluster_weights(y, groups, 300, np.random.default_rng(0))
    for row in weights:
        per_cluster = {g: set(row[groups == g]) for g in np.unique(groups)}
        assert all(len(values) == 1 for values in per_cluster.values())  # a cluster is drawn whole
        drawn = {g: values.pop() for g, values in per_cluster.items()}
        assert drawn["a"] + drawn["b"] + drawn["d"] == 3  # the three all-normal clips
        assert drawn["c"] == 1 and drawn["e"] == 1  # the one all-anomalous clip, the one mixed clip


def test_clustered_mcnemar_is_mcnemars_statistic_with_one_image_per_cluster_and_counts_clusters():
    correct_a = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    correct_b = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 1], dtype=bool)
    pairs_as_clusters = mcnemar_test(correct_a, correct_b, groups=np.arange(10) // 2)
    # per cluster a_only - b_only: 1, 0, 1, 1, 0 -> X^2 = (sum 3)^2 / (sum of squares 3) = 3
    assert pairs_as_clusters.method == "clustered" and pairs_as_clusters.clusters == 5
    assert pairs_as_clusters.p_value == pytest.approx(chi2.sf(3.0, df=1))
    assert (pairs_as_clusters.a_only_correct, pairs_as_clusters.b_only_correct) == (4, 1)
    # images 8 and 9 (both right or both wrong for the two) as one clip, the rest alone: McNemar's
    # uncorrected (b - c)^2 / (b + c) = (4 - 1)^2 / 5
    nearly_single = mcnemar_test(correct_a, correct_b, groups=[0, 1, 2, 3, 4, 5, 6, 7, 8, 8])
    assert nearly_single.p_value == pytest.approx(chi2.sf(9 / 5, df=1))
    assert mcnemar_test(correct_a, correct_b).method == "exact"


def test_noninferiority_uses_the_clustered_standard_error():
    rng = np.random.default_rng(5)
    y, groups = clustered_set(rng)
    a, b = equally_good_scores(rng, y, groups), equally_good_scores(rng, y, groups)
    clustered = noninferiority_test(y, a, b, margin=0.02, alpha=0.05, groups=groups)
    assert clustered.std_error == pytest.approx(delong_test(y, a, b, groups=groups).std_error)
    assert clustered.std_error > noninferiority_test(y, a, b, margin=0.02, alpha=0.05).std_error


def test_clustered_tests_hold_their_level_where_frame_level_tests_do_not():
    rng = np.random.default_rng(2026)
    simulations, bootstraps = 300, 100
    tests = ("frame DeLong", "clustered DeLong", "frame McNemar", "clustered McNemar", "frame bootstrap")
    rejected = dict.fromkeys((*tests, "cluster bootstrap"), 0)
    for simulation in range(simulations):
        y, groups = clustered_set(rng)
        a, b = equally_good_scores(rng, y, groups), equally_good_scores(rng, y, groups)
        rejected["frame DeLong"] += delong_test(y, a, b).p_value < 0.05
        rejected["clustered DeLong"] += delong_test(y, a, b, groups=groups).p_value < 0.05
        correct_a, correct_b = (a >= 0.5) == y, (b >= 0.5) == y
        rejected["frame McNemar"] += mcnemar_test(correct_a, correct_b).p_value < 0.05
        rejected["clustered McNemar"] += mcnemar_test(correct_a, correct_b, groups).p_value < 0.05
        if simulation < bootstraps:
            probs = [np.c_[1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))] for s in (a, b)]
            for name, g in (("frame bootstrap", None), ("cluster bootstrap", groups)):
                interval = paired_bootstrap(
                    y, *probs, groups=g, resamples=300, seed=simulation
                ).auc_difference
                rejected[name] += not interval.low <= 0.0 <= interval.high
    rates = {
        name: count / (bootstraps if "bootstrap" in name else simulations) for name, count in rejected.items()
    }
    print("\nfalse-positive rate at alpha 0.05, equally good models, 60 clips of 1-15 frames:")
    for name, rate in rates.items():
        print(f"  {name:18s} {rate:.3f}")
    assert 0.02 <= rates["clustered DeLong"] <= 0.09
    assert rates["clustered McNemar"] <= 0.09
    assert rates["cluster bootstrap"] <= 0.12
    for frame_level in ("frame DeLong", "frame McNemar", "frame bootstrap"):
        assert rates[frame_level] >= 0.25


def test_repeats_test_holds_its_level_under_seed_only_differences_where_one_run_does_not():
    rng = np.random.default_rng(29)
    simulations, repeats = 400, 3
    single_run = combined = 0
    for _ in range(simulations):
        y, groups = clustered_set(rng)
        case_effect = rng.normal(0.0, 1.0, groups.max() + 1)  # how hard each clip is, for every model

        def training_run(y, groups, case_effect):  # a seed changes the separation and the model's own errors
            separation = 1.0 + rng.normal(0.0, 0.35)
            own = rng.normal(0.0, 0.6, groups.max() + 1)[groups] + rng.normal(0.0, 0.4, len(y))
            return separation * y + case_effect[groups] + own

        a = np.stack([training_run(y, groups, case_effect) for _ in range(repeats)])
        b = np.stack([training_run(y, groups, case_effect) for _ in range(repeats)])
        single_run += delong_test(y, a[0], b[0], groups=groups).p_value < 0.05
        combined += repeats_test(y, a, b, groups=groups).p_value < 0.05
    print(
        f"\nfalse-positive rate at alpha 0.05, seed-only differences, {repeats} repeats: one run's "
        f"clustered DeLong {single_run / simulations:.3f}, Obuchowski-Rockette over repeats "
        f"{combined / simulations:.3f}"
    )
    assert combined / simulations <= 0.095
    assert single_run / simulations >= 0.2


def test_repeats_test_with_one_repeat_says_training_variance_is_not_estimable():
    rng = np.random.default_rng(0)
    y, groups = clustered_set(rng)
    a, b = equally_good_scores(rng, y, groups), equally_good_scores(rng, y, groups)
    result = repeats_test(y, a[None], b[None], groups=groups)
    assert not result.defined and "one training run" in result.undefined
    assert result.mean_difference == pytest.approx(delong_test(y, a, b).difference)


def test_repeats_test_finds_a_real_difference():
    rng = np.random.default_rng(1)
    y, groups = clustered_set(rng, clusters=120)
    a = np.stack([2.5 * y + rng.normal(0, 1.0, len(y)) for _ in range(4)])
    b = np.stack([0.8 * y + rng.normal(0, 1.0, len(y)) for _ in range(4)])
    result = repeats_test(y, a, b, groups=groups)
    assert result.p_value < 0.001 and result.low > 0
    assert len(result.differences) == 4 and result.spread is not None


def test_repeats_test_on_a_set_without_two_clusters_of_a_class_keeps_the_differences_and_says_why():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 3])  # every positive in one clip
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 8)) + y, rng.normal(size=(3, 8))
    result = repeats_test(y, a, b, groups=groups)
    assert len(result.differences) == 3 and "2 clusters with positives" in result.undefined
    single_class = repeats_test(np.ones(8, dtype=int), a, b, groups=groups)
    assert single_class.differences == [] and "single class" in single_class.undefined
