import numpy as np
import pytest

from renalmae.stats.mcnemar import mcnemar_exact


def test_exact_p_is_the_two_sided_binomial_tail_of_the_discordant_pairs():
    # 1 image only model a got right, 9 only model b: p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    correct_a = np.array([True] * 20 + [True] * 1 + [False] * 9 + [False] * 5)
    correct_b = np.array([True] * 20 + [False] * 1 + [True] * 9 + [False] * 5)
    result = mcnemar_exact(correct_a, correct_b)
    assert (result.a_only_correct, result.b_only_correct) == (1, 9)
    assert result.p_value == pytest.approx(22 / 1024)


def test_symmetric_in_the_two_models():
    rng = np.random.default_rng(0)
    correct_a, correct_b = rng.random(50) < 0.8, rng.random(50) < 0.6
    assert mcnemar_exact(correct_a, correct_b).p_value == pytest.approx(
        mcnemar_exact(correct_b, correct_a).p_value
    )


def test_no_discordant_pairs_gives_p_one():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same).p_value == 1.0


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([True, False], [True])


def test_the_smallest_attainable_p_is_two_over_two_to_the_discordant_pairs():
    correct_a = np.array([True] * 5 + [True] * 10)
    correct_b = np.array([False] * 5 + [True] * 10)
    result = mcnemar_exact(correct_a, correct_b)
    assert result.smallest_attainable_p == pytest.approx(2 / 2**5)
    assert result.p_value == pytest.approx(result.smallest_attainable_p)  # all five discordant one way
