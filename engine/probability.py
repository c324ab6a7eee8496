"""The distribution functions the running bot shows and decides on, in the standard library's floats.

scipy.stats costs the bot process about 60 MB for the few functions it needs there: the credible interval of a
posterior win rate, the Clopper-Pearson and Student-t intervals of a baseline, the one-sided binomial and
two-sample Kolmogorov-Smirnov tests of drift, the binomial bound of its calibration, and the rank correlation that
says whether a pair's score predicts its outcomes (also what every validation measures). Each function here
computes what the scipy function named in its docstring computes, to within float rounding (unit tests hold them
to scipy on grids and random samples). The isotonic calibration and the learned score weights are fitted in
numpy (`engine.calibration`, `engine.score_weights`); a logistic calibration loads scikit-learn.

The regularized incomplete beta function is Lentz's evaluation of its continued fraction (Numerical Recipes
6.4), taken on the side of the mean where it converges fastest; its inverse is Newton's method kept inside a
bisection bracket, so it always converges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

_EPSILON: Final = 1e-16
_TINY: Final = 1e-300
_MAX_TERMS: Final = 100_000
_MAX_STEPS: Final = 200
KS_EXACT_MAX_N: Final = 10_000  # as scipy's ks_2samp(method="auto"): exact when both samples are at most this


def normal_cdf(x: float) -> float:
    """Return P(Z <= x) for a standard normal Z (`scipy.stats.norm.cdf`)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Evaluate the incomplete beta function's continued fraction at x by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for numerator in (even, odd):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPSILON:
            return h
    raise ArithmeticError(f"the incomplete beta fraction did not converge for a={a}, b={b}, x={x}")


def beta_cdf(x: float, a: float, b: float) -> float:
    """Return the regularized incomplete beta function I_x(a, b) (`scipy.stats.beta.cdf(x, a, b)`)."""
    _check_shape(a, b)
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """Return the x with I_x(a, b) = q, the q-quantile of Beta(a, b) (`scipy.stats.beta.ppf(q, a, b)`)."""
    _check_shape(a, b)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile's probability must be within 0..1, was {q}")
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    if q > 0.5:  # solve the upper tail as the lower tail of the mirrored distribution: no cancellation near 1
        return 1.0 - _beta_lower_quantile(1.0 - q, b, a)
    return _beta_lower_quantile(q, a, b)


def _beta_lower_quantile(q: float, a: float, b: float) -> float:
    low, high = 0.0, 1.0
    x = a / (a + b)
    log_beta = _log_beta(a, b)
    for _ in range(_MAX_STEPS):
        error = beta_cdf(x, a, b) - q
        if error == 0.0:
            return x
        if error > 0.0:
            high = x
        else:
            low = x
        density = math.exp((a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - log_beta)
        step = x - error / density if density > 0.0 and math.isfinite(density) else math.nan
        following = step if low < step < high else 0.5 * (low + high)
        if abs(following - x) <= 4.0 * math.ulp(x) or high - low <= 4.0 * math.ulp(high):
            return following
        x = following
    raise ArithmeticError(f"the beta quantile did not converge for q={q}, a={a}, b={b}")


def student_t_ppf(q: float, df: float) -> float:
    """Return the q-quantile of Student's t with df degrees of freedom (`scipy.stats.t.ppf(q, df)`)."""
    if not (math.isfinite(df) and df > 0.0):
        raise ValueError(f"degrees of freedom must be positive, was {df}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"a t quantile's probability must be strictly within 0..1, was {q}")
    if q == 0.5:
        return 0.0
    # P(|T| <= t) = I_y(1/2, df/2) with y = t^2 / (df + t^2)
    y = beta_ppf(abs(2.0 * q - 1.0), 0.5, 0.5 * df)
    magnitude = math.sqrt(df * y / (1.0 - y))
    return magnitude if q > 0.5 else -magnitude


def student_t_sf(t: float, df: float) -> float:
    """Return P(T > t) for Student's t with df degrees of freedom (`scipy.stats.t.sf(t, df)`)."""
    if not (math.isfinite(df) and df > 0.0):
        raise ValueError(f"degrees of freedom must be positive, was {df}")
    if math.isnan(t):
        raise ValueError("t must be a number, was nan")
    if math.isinf(t):
        return 0.0 if t > 0.0 else 1.0
    # P(T > |t|) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2): the small upper tail without cancellation
    tail = 0.5 * beta_cdf(df / (df + t * t), 0.5 * df, 0.5)
    return tail if t >= 0.0 else 1.0 - tail


def average_ranks(values: Sequence[float]) -> list[float]:
    """Return the ranks 1..n of `values`, tied values sharing the mean of their ranks (`scipy.stats.rankdata`)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and values[order[end]] == values[order[start]]:
            end += 1
        shared = (start + end + 1) / 2.0  # the mean of ranks start + 1 .. end
        for k in range(start, end):
            ranks[order[k]] = shared
        start = end
    return ranks


def spearman_greater(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Return Spearman's rank correlation of `x` and `y` and the p-value of the one-sided test that it is positive.

    `scipy.stats.spearmanr(x, y, alternative="greater")`: the Pearson correlation of the average ranks, and
    Student's t with n - 2 degrees of freedom for the p-value. NaN (both) when a value is NaN or either side
    is constant, as scipy's.
    """
    n = len(x)
    if n != len(y) or n < 3:
        raise ValueError(f"the rank correlation needs two samples of the same size of at least 3, had {n} and {len(y)}")
    if any(math.isnan(v) for v in (*x, *y)):
        return math.nan, math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    mean = (n + 1) / 2.0  # of ranks 1..n, ties or not
    dx, dy = [r - mean for r in rx], [r - mean for r in ry]
    sxx, syy = math.fsum(d * d for d in dx), math.fsum(d * d for d in dy)
    if sxx == 0.0 or syy == 0.0:
        return math.nan, math.nan
    rho = math.fsum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy)
    rho = min(max(rho, -1.0), 1.0)
    dof = n - 2
    spread = (rho + 1.0) * (1.0 - rho)
    t = math.copysign(math.inf, rho) if spread == 0.0 else rho * math.sqrt(max(dof / spread, 0.0))
    return rho, student_t_sf(t, dof)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """Return P(X <= k) for X ~ Binomial(n, p) (`scipy.stats.binom.cdf(k, n, p)`)."""
    if n < 0:
        raise ValueError(f"a binomial needs n >= 0 trials, was {n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a binomial's probability must be within 0..1, was {p}")
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return beta_cdf(1.0 - p, n - k, k + 1)


def binomial_less_p(wins: int, trades: int, p0: float) -> float:
    """Return the p-value of the one-sided binomial test that the win rate is below p0.

    `scipy.stats.binomtest(wins, trades, p0, alternative="less").pvalue`.
    """
    if not 0 <= wins <= trades:
        raise ValueError(f"wins must be within 0..trades, were {wins} of {trades}")
    return binomial_cdf(wins, trades, p0)


def ks_greater(live: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """Return (D, p) of the one-sided two-sample KS test that `live` lies below `baseline`.

    `scipy.stats.ks_2samp(live, baseline, alternative="greater")` with its default method: D is the largest
    amount by which the live empirical CDF exceeds the baseline's; p is exact (the lattice paths crossing the
    boundary, counted in integers here) when both samples hold at most `KS_EXACT_MAX_N` values and the count of
    all paths fits a float, else Hodges' asymptotic approximation.
    """
    one, two = sorted(float(v) for v in live), sorted(float(v) for v in baseline)
    n1, n2 = len(one), len(two)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"the KS test needs values on both sides, had {n1} live and {n2} baseline")
    d = _ks_statistic(one, two)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        exact = _ks_exact_greater(n1, n2, d)
        if exact is not None:
            return exact
    m, n = max(n1, n2), min(n1, n2)
    en = m * n / (m + n)
    z = math.sqrt(en) * d
    p = math.exp(-2.0 * z * z - 2.0 * z * (m + 2.0 * n) / math.sqrt(m * n * (m + n)) / 3.0)
    return d, min(max(p, 0.0), 1.0)


def _ks_statistic(one: list[float], two: list[float]) -> float:
    """Return max over all values v of F_one(v) - F_two(v), clipped at 0, from two sorted samples."""
    n1, n2 = len(one), len(two)
    i = j = 0
    best = 0.0
    while i < n1 or j < n2:
        v = one[i] if j == n2 or (i < n1 and one[i] <= two[j]) else two[j]
        while i < n1 and one[i] == v:
            i += 1
        while j < n2 and two[j] == v:
            j += 1
        best = max(best, i / n1 - j / n2)
    return best


def _ks_exact_greater(n1: int, n2: int, d: float) -> tuple[float, float] | None:
    """Return scipy's exact one-sided (D, p), or None where scipy's floats would overflow and it approximates."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = round(d * lcm)
    d = h / lcm
    if h == 0:
        return d, 1.0
    total = math.comb(n1 + n2, n1)
    if total.bit_length() > 1023:  # not finite as a float: scipy's binomial overflows and it approximates
        return None
    if n1 == n2:
        p = 1.0
        for j in range(h):
            p *= (n1 - j) / (n1 + j + 1.0)
        return d, p
    return d, _paths_outside(n1, n2, g, h) / total


def _paths_outside(m: int, n: int, g: int, h: int) -> int:
    """Count the lattice paths from (0, 0) to (m, n) that reach m*y <= n*x - h*g (Hodges 1958), exactly.

    first[j] counts the paths to (xs[j], j) that reach the boundary there for the first time.
    """
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    count = n + (mg - h) // mg
    if count <= 0:
        return math.comb(m + n, n)
    xs = [(h + mg * j + ng - 1) // ng for j in range(count)]
    first: list[int] = [1]
    for j in range(1, count):
        reached = sum(math.comb(xs[j] - xs[i] + j - i, j - i) * first[i] for i in range(j))
        first.append(math.comb(xs[j] + j, j) - reached)
    return sum(first[j] * math.comb(m - xs[j] + n - j, n - j) for j in range(count))


def _check_shape(a: float, b: float) -> None:
    if not (math.isfinite(a) and a > 0.0 and math.isfinite(b) and b > 0.0):
        raise ValueError(f"a beta distribution needs positive finite shapes, had a={a}, b={b}")
