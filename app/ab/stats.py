"""Statistics of a blind A/B comparison, from votes alone (pure functions, no database).

- Win rate of B over A: (B wins + ties / 2) / all votes. Ties count as half a win for each side.
- Decisive votes are the votes that are not ties. B's share of them is what the interval and the
  test are about: a 95% Wilson score interval, and a two-sided exact sign test (a binomial test
  against 1/2, ties left out), the same p-value as scipy.stats.binomtest(k, n, 0.5).
- Every vote is one observation: votes of several people on the same pair are counted as if
  independent, which makes the interval a little too narrow when voters agree with each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the verdict calls a difference significant when p < ALPHA
Z = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.959963984540054
CHOICES = ("a", "b", "tie")


@dataclass(frozen=True)
class Tally:
    a: int = 0  # votes for model A
    b: int = 0  # votes for model B
    tie: int = 0

    @property
    def total(self) -> int:
        return self.a + self.b + self.tie

    @property
    def decisive(self) -> int:
        return self.a + self.b


def tally(choices: Iterable[str]) -> Tally:
    """Counts votes given in model terms ("a", "b", "tie")."""
    counts = {c: 0 for c in CHOICES}
    for choice in choices:
        if choice not in counts:
            raise ValueError(f"unknown vote {choice!r}: expected one of {', '.join(CHOICES)}")
        counts[choice] += 1
    return Tally(a=counts["a"], b=counts["b"], tie=counts["tie"])


def wilson_interval(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) when there is no observation."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    margin = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - margin)  # exact bounds, not rounding residue
    high = 1.0 if successes == n else min(1.0, centre + margin)
    return low, high


def sign_test(successes: int, n: int) -> float:
    """Two-sided exact binomial test of successes out of n against a probability of 1/2.

    The distribution is symmetric, so the p-value is twice the smaller tail, at most 1. It is
    computed with integers (exact up to the final division), so large n stay accurate.
    """
    if n == 0:
        return 1.0
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    k = min(successes, n - successes)
    if 2 * k == n:
        return 1.0
    term = tail = 1  # C(n, 0); each next term from the last: C(n, i) = C(n, i-1)·(n-i+1)/i
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class Result:
    tally: Tally
    win_rate_b: float | None  # (B wins + ties/2) / votes; None without votes
    share_b: float | None  # B's share of decisive votes; None without decisive votes
    ci_low: float  # 95% Wilson interval of share_b
    ci_high: float
    p_value: float  # two-sided exact sign test on decisive votes
    verdict: str

    @property
    def win_rate_a(self) -> float | None:
        return None if self.win_rate_b is None else 1 - self.win_rate_b

    @property
    def significant(self) -> bool:
        return self.tally.decisive > 0 and self.p_value < ALPHA

    @property
    def preferred(self) -> str | None:
        """"a" or "b" when the difference is significant, else None."""
        if not self.significant:
            return None
        return "b" if self.tally.b > self.tally.a else "a"


def pct(x: float) -> str:
    return f"{round(100 * x)}%"


def format_p(p: float) -> str:
    """p = 0.11, p = 0.055, p < 0.001."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def verdict(t: Tally, share_b: float | None, ci: tuple[float, float], p: float, *,
            label_a: str = "A", label_b: str = "B") -> str:
    """One plain sentence: who is preferred, by how much, and how sure we are."""
    if t.total == 0:
        return "No votes yet."
    if t.decisive == 0 or share_b is None:
        return f"No preference yet: all {t.total} votes were ties."
    leader, share, low, high = (label_b, share_b, ci[0], ci[1]) if t.b >= t.a else \
        (label_a, 1 - share_b, 1 - ci[1], 1 - ci[0])
    detail = (f"{leader} won {pct(share)} of {t.decisive} decisive votes, 95% CI "
              f"{round(100 * low)}–{round(100 * high)}%, {format_p(p)}")
    if p < ALPHA:
        return f"{leader} is preferred ({detail})."
    return f"No significant difference yet ({detail}; n = {t.total} votes)."


def analyse(choices: Iterable[str], *, label_a: str = "A", label_b: str = "B") -> Result:
    """Everything the results page and the API show, from votes in model terms."""
    t = tally(choices)
    win_rate_b = (t.b + t.tie / 2) / t.total if t.total else None
    share_b = t.b / t.decisive if t.decisive else None
    ci = wilson_interval(t.b, t.decisive)
    p = sign_test(t.b, t.decisive)
    return Result(tally=t, win_rate_b=win_rate_b, share_b=share_b, ci_low=ci[0], ci_high=ci[1], p_value=p,
                  verdict=verdict(t, share_b, ci, p, label_a=label_a, label_b=label_b))
