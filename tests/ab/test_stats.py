"""A/B statistics against cases computed by hand (z = 1.959964, the 97.5% normal quantile;
z² = 3.841459), and the exact sign test against a brute-force binomial sum."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from app.ab import stats


def test_eight_wins_two_losses():
    r = stats.analyse(["b"] * 8 + ["a"] * 2)
    assert (r.tally.a, r.tally.b, r.tally.tie, r.tally.total, r.tally.decisive) == (2, 8, 0, 10, 10)
    assert r.win_rate_b == 0.8 and r.win_rate_a == pytest.approx(0.2) and r.share_b == 0.8
    # Wilson, n = 10, p̂ = 0.8:
    #   denominator = 1 + z²/n = 1.3841459
    #   centre      = (p̂ + z²/2n) / 1.3841459 = (0.8 + 0.1920729) / 1.3841459 = 0.716740
    #   half-width  = z·√(p̂(1−p̂)/n + z²/4n²) / 1.3841459 = 1.959964·√(0.016 + 0.0096036) / 1.3841459
    #               = 1.959964·0.1600114 / 1.3841459 = 0.226578
    #   interval    = 0.716740 ∓ 0.226578 = 0.490162 … 0.943318
    assert r.ci_low == pytest.approx(0.490162, abs=1e-6)
    assert r.ci_high == pytest.approx(0.943318, abs=1e-6)
    # Sign test: P(X ≤ 2) for X ~ Bin(10, ½) = (1 + 10 + 45) / 1024 = 56/1024; two-sided: 112/1024.
    assert r.p_value == 0.109375
    assert not r.significant and r.preferred is None
    assert r.verdict == ("No significant difference yet (B won 80% of 10 decisive votes, 95% CI 49–94%, "
                         "p = 0.11; n = 10 votes).")


def test_ties_count_half_in_the_win_rate_and_are_left_out_of_the_test():
    r = stats.analyse(["b"] * 6 + ["a"] * 2 + ["tie"] * 4)
    assert r.win_rate_b == pytest.approx((6 + 4 / 2) / 12)  # 0.666667
    assert r.win_rate_a == pytest.approx((2 + 4 / 2) / 12)  # 0.333333
    assert r.share_b == 0.75  # 6 of 8 decisive
    # Wilson, n = 8, p̂ = 0.75: denominator 1.4801824, centre (0.75 + 0.2400912)/1.4801824 = 0.668898,
    # half-width 1.959964·√(0.0234375 + 0.0150057)/1.4801824 = 0.259623 -> 0.409275 … 0.928521
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.409275, abs=1e-6), pytest.approx(0.928521, abs=1e-6))
    assert r.p_value == 74 / 256  # 2·(1 + 8 + 28)/2⁸ = 0.2890625


def test_a_clear_preference_for_b_is_significant():
    r = stats.analyse(["b"] * 15 + ["a"] * 2)
    assert r.p_value == 308 / 2**17  # 2·(1 + 17 + 136)/131072 = 0.00234985...
    assert r.significant and r.preferred == "b"
    # Wilson, n = 17, p̂ = 15/17: centre 0.811878, half-width 0.155242 -> 0.656636 … 0.967120
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.656636, abs=1e-6), pytest.approx(0.967120, abs=1e-6))
    assert r.verdict == "B is preferred (B won 88% of 17 decisive votes, 95% CI 66–97%, p = 0.0023)."


def test_a_clear_preference_for_a_reports_a_and_its_own_interval():
    r = stats.analyse(["a"] * 10, label_a="the base model")
    # Wilson of B's share 0/10: centre = half-width = (z²/2n)/(1 + z²/n) = 0.1920729/1.3841459 = 0.138766,
    # so B's interval is 0 … 0.277533 and A's is 0.722467 … 1.
    assert r.ci_low == 0.0 and r.ci_high == pytest.approx(0.277533, abs=1e-6)
    assert r.p_value == 2 / 1024 and r.preferred == "a"
    assert r.verdict == ("the base model is preferred (the base model won 100% of 10 decisive votes, "
                         "95% CI 72–100%, p = 0.002).")


def test_no_votes_and_only_ties():
    empty = stats.analyse([])
    assert empty.win_rate_b is None and empty.share_b is None and empty.p_value == 1.0
    assert (empty.ci_low, empty.ci_high) == (0.0, 1.0) and empty.verdict == "No votes yet."
    ties = stats.analyse(["tie"] * 3)
    assert ties.win_rate_b == 0.5 and ties.share_b is None and not ties.significant
    assert ties.verdict == "No preference yet: all 3 votes were ties."


def test_an_even_split_has_p_one():
    assert stats.sign_test(5, 10) == 1.0
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(1, 1) == 1.0  # 2·½, capped at 1


def _minlike(k: int, n: int) -> float:
    """scipy's two-sided definition: the total probability of outcomes no likelier than k."""
    pmf = [Fraction(comb(n, i), 2**n) for i in range(n + 1)]
    return float(min(Fraction(1), sum(x for x in pmf if x <= pmf[k])))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 16, 25, 40])
def test_sign_test_matches_the_exact_definition(n):
    for k in range(n + 1):
        assert stats.sign_test(k, n) == pytest.approx(_minlike(k, n), rel=1e-12), (k, n)


def test_large_numbers_stay_exact_and_fast():
    assert stats.sign_test(5000, 10000) == 1.0
    assert 0 < stats.sign_test(5200, 10000) < 1e-4  # 200 over the mean is 4 standard deviations
    assert stats.sign_test(0, 3000) == 0.0 or stats.sign_test(0, 3000) < 1e-300


def test_wilson_matches_its_definition_and_refuses_nonsense():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = stats.wilson_interval(50, 100)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.403832, abs=1e-6)
    with pytest.raises(ValueError):
        stats.wilson_interval(3, 2)
    with pytest.raises(ValueError):
        stats.tally(["left"])


def test_p_values_are_written_plainly():
    assert stats.format_p(0.109375) == "p = 0.11"
    assert stats.format_p(0.0546875) == "p = 0.055"
    assert stats.format_p(0.0004) == "p < 0.001"
    assert stats.format_p(1.0) == "p = 1"
