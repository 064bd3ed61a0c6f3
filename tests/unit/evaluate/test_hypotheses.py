"""Holm's family holds the declared hypotheses only; tests that are undefined or cannot reach alpha are
descriptive, with their reason."""

import pytest
from comparekit import FOLDS, write_prediction_runs

from renalmae.errors import ParamsError
from renalmae.evaluate import check_runs, compare_task, load_run
from renalmae.evaluate.hypotheses import HypothesisOutcome, declared_family
from renalmae.params import EvaluateParams, params_from_dict


def _outcomes():
    return [
        HypothesisOutcome("delong:test", None, "z = 2.6", 0.01),
        HypothesisOutcome("mcnemar:test", None, "discordant 20 vs 8", 0.02, smallest_attainable_p=2**-27),
        HypothesisOutcome("wilcoxon_auc:validation", None, "5 folds", 0.0625, smallest_attainable_p=0.0625),
    ]


def test_holm_runs_over_the_declared_hypotheses_only():
    placed = declared_family(_outcomes(), ["delong:test"], alpha=0.05)
    assert [o.in_family for o in placed] == [True, False, False]
    assert placed[0].p_holm == pytest.approx(0.01) and placed[0].rejected
    assert placed[1].reason == "descriptive: not declared in evaluate.hypotheses"


def test_an_extra_declared_test_costs_the_others_power_and_an_undeclared_one_does_not():
    both = declared_family(_outcomes(), ["delong:test", "mcnemar:test"], alpha=0.05)
    assert both[0].p_holm == pytest.approx(0.02)  # 2 x 0.01: the price of declaring McNemar too
    alone = declared_family(_outcomes(), ["delong:test"], alpha=0.05)
    assert alone[0].p_holm == pytest.approx(0.01)


def test_wilcoxon_over_five_folds_is_descriptive_even_when_declared():
    placed = declared_family(_outcomes(), ["delong:test", "wilcoxon_auc:validation"], alpha=0.05)
    wilcoxon = placed[2]
    assert not wilcoxon.in_family and wilcoxon.p_holm is None
    assert "cannot reach alpha 0.05 with these data (smallest attainable p 0.0625)" in wilcoxon.reason
    assert placed[0].p_holm == pytest.approx(0.01)  # it did not dilute the family


def test_an_undefined_declared_test_is_described_with_its_reason():
    undefined = HypothesisOutcome("delong:external", None, "", None, undefined="too few images")
    placed = declared_family([undefined], ["delong:external"], alpha=0.05)
    assert not placed[0].in_family
    assert placed[0].reason == "descriptive: not defined on these data (too few images)"


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    run_dirs = write_prediction_runs(tmp_path_factory.mktemp("hypotheses") / "models", tasks=("multiclass",))
    runs = check_runs([load_run(d) for d in run_dirs], ["multiclass"], FOLDS)["multiclass"]
    return compare_task("multiclass", runs, EvaluateParams(bootstrap_resamples=100)).summary


def test_a_multiclass_delong_hypothesis_is_one_test_per_class_all_in_the_family(multiclass):
    delong = [t for t in multiclass["tests"] if t["hypothesis"] == "delong:test"]
    assert [t["class_name"] for t in delong] == ["normal", "utd", "mcdk"]
    defined = [t for t in delong if not t["undefined"]]
    assert defined and all(t["in_family"] for t in defined)
    assert set(multiclass["p_values_holm"]) == {t["key"] for t in multiclass["tests"] if t["in_family"]}


def test_a_declared_external_hypothesis_without_an_external_set_is_absent(multiclass):
    assert "delong:external" in multiclass["declared_hypotheses"]
    assert not [t for t in multiclass["tests"] if t["hypothesis"] == "delong:external"]


def test_wilcoxon_and_mcnemar_are_descriptive_by_default(multiclass):
    for test in multiclass["tests"]:
        if test["hypothesis"].split(":")[0] in ("wilcoxon_auc", "wilcoxon_f1", "mcnemar"):
            assert not test["in_family"] and test["reason"].startswith("descriptive")


def test_an_unknown_hypothesis_is_refused_naming_the_allowed_ones():
    with pytest.raises(ParamsError, match=r"evaluate.hypotheses.0.*delong:test"):
        params_from_dict({"evaluate": {"hypotheses": ["delong:holdout"]}})
