r"""Weak-error estimation with confidence intervals, and fitting the weak order against the learning rate.

The weak error between two methods over a horizon :math:`T` (THEORY.md 3.1, oracle 24) is

.. math:: e=\max_{0\le k\le K}\big|\mathbb Eh(x_k)-\mathbb Eh(y_k)\big|,\qquad t_k=k\,P\le T .

:func:`weak_error` estimates it from :math:`N` paths.  When both sides are simulated it pairs them on the
**same normal draws** (common random numbers, :func:`theory.simulate.run_lockstep`): the per-time
difference :math:`d_k` is the mean of :math:`h(x_k^{(i)})-h(y_k^{(i)})` over paths, with standard error
:math:`\sqrt{\operatorname{Var}(h(x_k)-h(y_k))/N}`.  Without pairing the standard error is
:math:`\sqrt{(\operatorname{Var}h(x_k)+\operatorname{Var}h(y_k))/N}`; the ratio of the two variances is
the **variance-reduction factor** of common random numbers (how many times fewer paths pairing needs for
the same interval width; DESIGN.md section 7).  The reference side may instead be deterministic
(a callable of the times, e.g. :func:`theory.kolmogorov.kolmogorov_expectation` or an exact moment).

The confidence interval for the maximum is simultaneous over the :math:`K+1` times (Bonferroni):
with :math:`q=\Phi^{-1}(1-\frac{1-\text{level}}{2(K+1)})`,
:math:`[\max_k(|d_k|-q\,\mathrm{se}_k)^+,\ \max_k(|d_k|+q\,\mathrm{se}_k)]`.

:func:`fit_weak_order` fits :math:`\log e=\log C+p\log\eta` by weighted least squares with weights from the
per-point standard errors (delta method, :math:`\mathrm{se}(\log e)=\mathrm{se}(e)/e`), inflating the slope
variance by the reduced :math:`\chi^2` when the points scatter more than their errors (higher-order
terms), or by a parametric bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from theory.simulate import Method, Seed, run_lockstep
from theory.validation import check_int

__all__ = ["WeakErrorResult", "WeakOrderFit", "fit_weak_order", "weak_error", "weak_errors"]

Observable = Callable[[np.ndarray], np.ndarray]
Reference = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WeakErrorResult:
    r"""Estimate, simultaneous CI and diagnostics of :math:`\max_k|\mathbb Eh(x_k)-\mathbb Eh(y_k)|`.

    ``differences[k]`` and ``standard_errors[k]`` are per observation time ``times[k]``; ``index`` is the
    arg-max.  ``independent_standard_errors[k]`` is
    :math:`\sqrt{(\operatorname{Var}h(x_k)+\operatorname{Var}h(y_k))/N}`,
    the standard error independent sampling would have had with the same :math:`N` (equal to
    ``standard_errors`` when unpaired or against a deterministic reference).
    """

    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    index: int
    n: int
    level: float
    paired: bool
    times: np.ndarray
    differences: np.ndarray
    standard_errors: np.ndarray
    independent_standard_errors: np.ndarray

    @property
    def time(self) -> float:
        return float(self.times[self.index])

    @property
    def variance_reduction(self) -> float:
        r"""How many times more paths independent sampling needs for the same simultaneous CI width.

        :math:`\big(\max_k\mathrm{se}^{\rm indep}_k/\max_k\mathrm{se}_k\big)^2`; 1 when unpaired.
        """
        paired_max = float(np.max(self.standard_errors))
        if paired_max == 0.0:
            return math.inf
        return (float(np.max(self.independent_standard_errors)) / paired_max) ** 2


def _check_level(level: float) -> float:
    level = float(level)
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    return level


def _evaluate(h: Observable, x: np.ndarray) -> np.ndarray:
    values = np.asarray(h(x), dtype=np.float64)
    if values.shape != (x.shape[0],):
        raise ValueError(f"h must map x of shape (N, d) to shape (N,), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("h returned non-finite values")
    return values


def _summarise(
    times: np.ndarray, diffs: np.ndarray, ses: np.ndarray, ind: np.ndarray, n: int, level: float, paired: bool
) -> WeakErrorResult:
    quantile = stats.norm.ppf(1.0 - (1.0 - level) / (2.0 * times.size))
    magnitude = np.abs(diffs)
    index = int(np.argmax(magnitude))
    return WeakErrorResult(
        estimate=float(magnitude[index]),
        ci_low=float(np.max(np.clip(magnitude - quantile * ses, 0.0, None))),
        ci_high=float(np.max(magnitude + quantile * ses)),
        standard_error=float(ses[index]),
        index=index,
        n=n,
        level=level,
        paired=paired,
        times=times,
        differences=diffs,
        standard_errors=ses,
        independent_standard_errors=ind,
    )


def weak_error(
    method_a: Method,
    method_b: Method | Reference,
    h: Observable | Sequence[Observable],
    x0: np.ndarray | Sequence[float] | float,
    T: float,
    n_paths: int,
    seed: Seed,
    *,
    observe_every: int = 1,
    paired: bool = True,
    level: float = 0.95,
    divergence_bound: float = 1e12,
) -> WeakErrorResult | tuple[WeakErrorResult, ...]:
    r"""Estimate :math:`\max_{t_k\le T}|\mathbb Eh(x_k)-\mathbb Eh(y_k)|` between ``method_a`` and ``method_b``.

    ``method_b`` is a :class:`~theory.simulate.Method` (simulated on the same draws when ``paired``) or a
    deterministic reference: a callable mapping the observation times (shape ``(K+1,)``) to
    :math:`\mathbb Eh(y(t_k))` (shape ``(K+1,)``; with several observables, shape ``(K+1, p)``).
    Observation times are every ``observe_every`` steps of the coarser method; ``T`` must be a whole
    number of them.  ``h`` is one observable or a sequence (then a tuple of results is returned).
    """
    if not isinstance(method_a, Method):
        raise ValueError(f"method_a must be a theory.simulate.Method, got {type(method_a).__name__}")
    return weak_errors(
        [method_a],
        method_b,
        h,
        x0,
        T,
        n_paths,
        seed,
        observe_every=observe_every,
        paired=paired,
        level=level,
        divergence_bound=divergence_bound,
    )[0]


def weak_errors(
    methods_a: Sequence[Method],
    method_b: Method | Reference,
    h: Observable | Sequence[Observable],
    x0: np.ndarray | Sequence[float] | float,
    T: float,
    n_paths: int,
    seed: Seed,
    *,
    observe_every: int = 1,
    paired: bool = True,
    level: float = 0.95,
    divergence_bound: float = 1e12,
) -> list[WeakErrorResult | tuple[WeakErrorResult, ...]]:
    r""":func:`weak_error` of each of ``methods_a`` against one ``method_b``, all simulated together.

    Every method runs on the same draws (common random numbers), so ``method_b`` is simulated once for all of them
    and each result equals what :func:`weak_error` returns for that method alone with the same ``seed`` (the
    Brownian stream is shared; methods that draw auxiliary randomness, such as SVAG, get other streams).
    """
    observables = tuple(h) if isinstance(h, (list, tuple)) else (h,)
    if not observables or not all(callable(f) for f in observables):
        raise ValueError("h must be a callable (or a sequence of callables) mapping (N, d) arrays to (N,)")
    level = _check_level(level)
    methods_a = list(methods_a)
    if not methods_a or not all(isinstance(m, Method) for m in methods_a):
        raise ValueError("methods_a must be a non-empty sequence of theory.simulate.Method")
    simulated_b = isinstance(method_b, Method)
    if not simulated_b and not callable(method_b):
        raise ValueError("method_b must be a theory.simulate.Method or a callable of the observation times")
    methods = [*methods_a, method_b] if simulated_b else methods_a
    period = observe_every * max(m.time_step for m in methods)
    T = float(T)
    n_periods = round(T / period) if math.isfinite(T) and T > 0 else -1
    if n_periods < 1 or abs(n_periods * period - T) > 1e-9 * T:
        raise ValueError(f"T must be a positive multiple of the observation period {period:g}, got {T!r}")

    p, n_a = len(observables), len(methods_a)
    rows = []
    for _, _, states in run_lockstep(
        methods,
        x0,
        n_periods,
        n_paths,
        seed,
        period_steps=observe_every,
        shared_noise=paired,
        divergence_bound=divergence_bound,
    ):
        row = []
        for i in range(n_a):
            for f in observables:
                a = _evaluate(f, states[i])
                if simulated_b:
                    b = _evaluate(f, states[-1])
                    diff = a - b
                    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
                    row.append((diff.mean(), diff.var(ddof=1) if paired else var_a + var_b, var_a + var_b))
                else:
                    var_a = a.var(ddof=1)
                    row.append((a.mean(), var_a, var_a))
        rows.append(row)
    table = np.array(rows).reshape(n_periods + 1, n_a, p, 3)  # mean difference, its variance, independent variance
    times = period * np.arange(n_periods + 1)
    if not simulated_b:
        reference = np.asarray(method_b(times), dtype=np.float64)
        if reference.ndim == 1:
            reference = reference[:, None]
        if reference.shape != (times.size, p) or not np.all(np.isfinite(reference)):
            raise ValueError(f"the reference must return finite values of shape ({times.size},) or ({times.size}, {p})")
        table[:, :, :, 0] -= reference[:, None, :]

    outcome: list[WeakErrorResult | tuple[WeakErrorResult, ...]] = []
    for i in range(n_a):
        results = []
        for j in range(p):
            ses = np.sqrt(table[:, i, j, 1] / n_paths)
            independent = np.sqrt(table[:, i, j, 2] / n_paths)
            results.append(
                _summarise(times, table[:, i, j, 0], ses, independent, n_paths, level, paired and simulated_b)
            )
        outcome.append(results[0] if p == 1 and not isinstance(h, (list, tuple)) else tuple(results))
    return outcome


@dataclass(frozen=True)
class WeakOrderFit:
    r"""Fitted :math:`e\approx C\eta^p`: ``order`` :math:`p` with its CI, ``log_constant`` :math:`\log C`.

    ``inflation`` is the factor applied to the slope's standard error (:math:`\sqrt{\chi^2_{\rm red}}` if
    above 1); ``method`` is ``"wls"`` or ``"bootstrap"``.
    """

    order: float
    ci_low: float
    ci_high: float
    standard_error: float
    log_constant: float
    inflation: float
    level: float
    method: str


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    intercept = ym - slope * xm
    chi2 = float(np.sum(w * (y - intercept - slope * x) ** 2))
    return float(slope), float(intercept), float(1.0 / sxx), chi2


def fit_weak_order(
    etas: Sequence[float] | np.ndarray,
    errors: Sequence[float] | Sequence[WeakErrorResult] | np.ndarray,
    standard_errors: Sequence[float] | np.ndarray | None = None,
    *,
    level: float = 0.95,
    method: str = "wls",
    n_bootstrap: int = 2000,
    seed: Seed | None = None,
) -> WeakOrderFit:
    r"""Fit the weak order :math:`p` in :math:`e(\eta)\approx C\eta^p` by log-log regression, with a CI.

    ``errors`` are the weak errors (or :class:`WeakErrorResult` objects, whose ``estimate`` and
    ``standard_error`` are used).  ``method="wls"``: weighted least squares, slope variance
    :math:`1/\sum_iw_i(\log\eta_i-\overline{\log\eta})^2` times :math:`\max(1,\chi^2/(n-2))`, normal
    quantile (Student-t with :math:`n-2` degrees of freedom when inflated).  ``method="bootstrap"``:
    parametric bootstrap :math:`e_i^*\sim N(e_i,\mathrm{se}_i)` (``seed`` required), percentile interval.
    """
    level = _check_level(level)
    eta_arr = np.asarray(etas, dtype=np.float64).reshape(-1)
    if len(errors) and isinstance(errors[0], WeakErrorResult):
        if standard_errors is not None:
            raise ValueError("pass standard_errors only with plain error values")
        standard_errors = [r.standard_error for r in errors]
        errors = [r.estimate for r in errors]
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    if standard_errors is None:
        raise ValueError("standard_errors are required with plain error values")
    se = np.asarray(standard_errors, dtype=np.float64).reshape(-1)
    if not (eta_arr.size == err.size == se.size) or eta_arr.size < 2:
        raise ValueError(
            f"etas, errors and standard_errors need equal lengths >= 2, got {eta_arr.size}, {err.size}, {se.size}"
        )
    if not (np.all(eta_arr > 0) and np.all(np.isfinite(eta_arr)) and np.unique(eta_arr).size == eta_arr.size):
        raise ValueError("etas must be distinct, finite and > 0")
    if not (np.all(err > 0) and np.all(np.isfinite(err))):
        raise ValueError("errors must be finite and > 0 (an error at the noise floor cannot be fitted on a log scale)")
    if not (np.all(se > 0) and np.all(np.isfinite(se))):
        raise ValueError("standard_errors must be finite and > 0")
    x, y = np.log(eta_arr), np.log(err)
    weights = (err / se) ** 2
    slope, intercept, variance, chi2 = _wls(x, y, weights)
    dof = eta_arr.size - 2
    inflation = max(1.0, math.sqrt(chi2 / dof)) if dof > 0 else 1.0
    slope_se = math.sqrt(variance) * inflation
    if method == "wls":
        if inflation > 1.0:
            quantile = stats.t.ppf(0.5 + level / 2, dof)
        else:
            quantile = stats.norm.ppf(0.5 + level / 2)
        low, high = slope - quantile * slope_se, slope + quantile * slope_se
    elif method == "bootstrap":
        if seed is None:
            raise ValueError("method='bootstrap' needs a seed")
        n_bootstrap = check_int(n_bootstrap, "n_bootstrap", minimum=100)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        draws = err + se * rng.standard_normal((n_bootstrap, err.size))
        draws = np.clip(draws, 1e-300, None)
        slopes = np.array([_wls(x, np.log(row), (row / se) ** 2)[0] for row in draws])
        low, high = np.quantile(slopes, [0.5 - level / 2, 0.5 + level / 2])
        slope_se = float(slopes.std(ddof=1))
    else:
        raise ValueError(f"method must be 'wls' or 'bootstrap', got {method!r}")
    return WeakOrderFit(slope, float(low), float(high), slope_se, intercept, inflation, level, method)
