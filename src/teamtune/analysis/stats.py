"""The statistics of the analysis tables: t intervals over seeds, the exact sign test over paired problems, and
the power of each (the smallest true difference found 4 times in 5 at p < 0.05)."""

from __future__ import annotations

import math
import statistics

# Student t quantiles by degrees of freedom: 0.975 (two-sided 95%) and 0.8 (80% power); the normal's beyond 30
_T975 = """12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110
    2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042"""
_T80 = """1.376 1.061 0.978 0.941 0.920 0.906 0.896 0.889 0.883 0.879 0.876 0.873 0.870 0.868 0.866 0.865 0.863 0.862
    0.861 0.860 0.859 0.858 0.858 0.857 0.856 0.856 0.855 0.855 0.854 0.854"""
T975 = {df: float(t) for df, t in enumerate(_T975.split(), 1)}
T80 = {df: float(t) for df, t in enumerate(_T80.split(), 1)}
Z975, Z80 = 1.960, 0.8416


def ci95(values: list[float]) -> float:
    """Half-width of the 95% t-interval of the mean; 0 for a single value."""
    if len(values) < 2:
        return 0.0
    return T975.get(len(values) - 1, Z975) * statistics.stdev(values) / math.sqrt(len(values))


def seed_detectable(sd: float, n: int) -> float | None:
    """The smallest true mean difference a paired t-test over `n` seeds finds with 80% power at two-sided
    p < 0.05, for differences of standard deviation `sd` ((t 0.975 + t 0.8) sd / sqrt(n), n - 1 degrees of
    freedom); None below two seeds."""
    if n < 2:
        return None
    return (T975.get(n - 1, Z975) + T80.get(n - 1, Z80)) * sd / math.sqrt(n)


def seeds_needed(sd: float, effect: float, most: int = 100) -> int | None:
    """The fewest seeds whose paired t-test finds a true difference `effect` with 80% power, for seed-to-seed
    differences of standard deviation `sd`; None when more than `most` (or no effect)."""
    if effect == 0:
        return None
    return next((n for n in range(2, most + 1) if seed_detectable(sd, n) <= abs(effect)), None)


def seed_power(diffs: list[float]) -> dict | None:
    """For paired per-seed differences: what the paired t-test over them finds with 80% power, and from three
    seeds on (two give a standard deviation of one degree of freedom) how many seeds would find the observed mean
    difference so (None: more than 100). None for fewer than two seeds."""
    if len(diffs) < 2:
        return None
    sd = statistics.stdev(diffs)
    out = {"detectable": seed_detectable(sd, len(diffs))}
    if len(diffs) >= 3:
        out["seeds_for_observed"] = seeds_needed(sd, statistics.fmean(diffs))
    return out


def sign_test(ref: list[float], other: list[float]) -> dict:
    """Exact two-sided sign test on paired scores: problems where `other` is higher (gained) or lower (lost),
    and the binomial p-value of that split. On right/wrong outcomes of one seed it is the exact McNemar test; on
    each problem's accuracy over several seeds it pairs problems, not (seed, problem) copies of them."""
    pairs = list(zip(ref, other, strict=True))
    gained = sum(1 for r, o in pairs if o > r)
    lost = sum(1 for r, o in pairs if o < r)
    n, k = gained + lost, min(gained, lost)
    p = 1.0 if n == 0 else _sign_p(n, k)
    step = statistics.fmean(abs(o - r) for r, o in pairs if o != r) if n else 1.0
    return {
        "pairs": len(ref),
        "gained": gained,
        "lost": lost,
        "p": p,
        "detectable": detectable(n, len(ref), step),
    }


def _sign_p(n: int, k: int) -> float:
    """Two-sided exact sign-test p-value of a split with `k` on the smaller side out of `n`."""
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def detectable(discordant: int, pairs: int, step: float = 1.0, power: float = 0.8, alpha: float = 0.05):
    """The smallest true difference in mean score (a share of `pairs`) that the exact sign test finds with
    probability `power` at two-sided level `alpha`, given `discordant` pairs that differ by `step` on average
    (1 for right/wrong outcomes): the difference when a share q of them goes one way, with the least q whose
    binomial chance of a significant split is `power`. None when no split of so few pairs is significant."""
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError(f"power and alpha must lie in (0, 1), got {power} and {alpha}")
    n, k, cdf = discordant, -1, 0
    while k + 1 <= n // 2 and 2 * (cdf + math.comb(n, k + 1)) / 2**n <= alpha:  # the largest significant k
        k, cdf = k + 1, cdf + math.comb(n, k + 1)
    if k < 0:
        return None
    logc = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]

    def chance(q: float) -> float:  # P(the smaller side has <= k pairs) when each pair goes up with chance q
        if q >= 1:
            return 1.0
        a, b = math.log(q), math.log1p(-q)
        return sum(
            math.exp(c + i * a + (n - i) * b) + math.exp(c + i * b + (n - i) * a) for i, c in enumerate(logc)
        )

    lo, hi = 0.5, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if chance(mid) >= power else (mid, hi)
    return (2 * hi - 1) * n * step / pairs


def power_note(unit: str = "points") -> str:
    """What a table's "80% power at" means, its differences in `unit`."""
    return (
        f"the smallest true difference ({unit}) the sign test finds 4 times in 5 at p < 0.05, for as many pairs "
        "differing as here (none: too few differ for any split to be significant)."
    )


def power_cell(test: dict, scale: float = 100, digits: int = 1) -> str:
    """A sign test's detectable difference for a table: points (or `scale` units), "none", or "—" for a test
    written before it was recorded."""
    if "detectable" not in test:
        return "—"
    d = test["detectable"]
    return "none" if d is None else f"{d * scale:.{digits}f}"


SEED_POWER_NOTE = (
    "Beside a difference seed by seed: the smallest true difference a paired t-test over these seeds finds 4 "
    "times in 5 at p < 0.05, and from three seeds how many seeds would find the difference seen so ((t 0.975 + "
    "t 0.8) times the standard deviation of the seeds' differences over the root of their number)."
)


def seed_power_note(power: dict | None, observed: float) -> str:
    """The seed-level power of a difference for a table: "80% power at X; N seeds to find D" ("" below two
    seeds; no projection from two)."""
    if not power:
        return ""
    out = f"80% power at {power['detectable'] * 100:.1f}"
    if "seeds_for_observed" not in power:
        return out
    n = power["seeds_for_observed"]
    return out + f"; {f'{n} seeds' if n else 'over 100 seeds'} to find {observed * 100:+.1f}"
