r"""Vectorised Monte Carlo of SGD, normalized SGDM and SVAG on analytic problems, with common random numbers.

Every method (the discrete optimizers here, the SDE integrators of :mod:`theory.integrators`) is a frozen
config implementing :class:`Method`: it advances ``N`` paths in place, given one standard normal vector
per path and step.  :func:`simulate` drives one method; :func:`run_lockstep` drives several **on the same
normal draws** (common random numbers): the draws live on the finest time grid of the methods, and a
method whose step spans :math:`m` fine steps receives their normalized sum
:math:`z=\frac1{\sqrt m}\sum_{j<m}z_j` — exactly the Brownian increment over its step divided by
:math:`\sqrt{h}`.  SGD at :math:`\eta` with :math:`\sigma=\eta^{-1/2}` and Euler–Maruyama for its SDE at
step :math:`\eta` therefore see the same Brownian path.

The discrete updates (paper eq. (3), Definition 3.3; SVAG Definition 5.1; THEORY.md 1.2, 6.1):

.. math::
    g_k=\nabla\mathcal L(x_k)+\sigma B(x_k)z_k,\qquad
    m_{k+1}=\beta_k m_k+(1-\beta_k)g_k,\qquad x_{k+1}=x_k-\eta_k m_{k+1},

SGD is :math:`\beta=0` (no momentum state is kept); SVAG replaces :math:`\eta` by :math:`\eta/\ell` and
:math:`g` by :math:`r_1g^{(1)}+r_2g^{(2)}` with two independent gradient samples.

Divergence — a non-finite state or :math:`|y|` above ``divergence_bound`` — raises
:class:`DivergenceError` naming the method, its parameters, the first bad step and path; statistics are
never computed from NaN.  Randomness comes only from the ``seed`` argument (an int, a
:class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from theory.params import check_learning_rate, check_momentum
from theory.problems import Problem
from theory.svag import svag_coefficients
from theory.validation import as_real_array, check_int, check_positive, check_real

__all__ = [
    "SGD",
    "SGDM",
    "SVAG",
    "DivergenceError",
    "Method",
    "SimulationResult",
    "run_lockstep",
    "simulate",
]

Seed = int | np.random.SeedSequence | np.random.Generator
#: fine normals drawn per chunk, counted in floats (about 16 MB of float64)
_CHUNK_FLOATS = 1 << 21


class DivergenceError(ValueError):
    """A simulated path left the finite range: raised with the method, step, time and path that failed."""

    def __init__(self, method: str, parameters: dict, step: int, time: float, path: int, value: float, bound: float):
        self.method = method
        self.parameters = dict(parameters)
        self.step = step
        self.time = time
        self.path = path
        self.value = value
        self.bound = bound
        params = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        super().__init__(
            f"{method} diverged at step {step} (t = {time:.6g}): path {path} reached |y| = {value:.3g} "
            f"(non-finite or above the divergence bound {bound:.3g}); parameters: {params}"
        )


class Method(ABC):
    """A simulation method advancing ``N`` paths in place; see the module docstring."""

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def time_step(self) -> float:
        """Continuous time one step represents (the unit used to align methods on a common grid)."""

    @property
    @abstractmethod
    def noise_dim(self) -> int: ...

    @property
    @abstractmethod
    def observed_dim(self) -> int:
        """Dimension ``d`` of the parameter :math:`x`: the first ``d`` state coordinates."""

    @abstractmethod
    def initial_state(self, x0: np.ndarray) -> np.ndarray:
        """Full state ``(N, n)`` (float64, C-contiguous) from initial parameters ``x0`` of shape ``(N, d)``."""

    @abstractmethod
    def advance(
        self, state: np.ndarray, z: np.ndarray, first_step: int, aux: np.random.Generator, owns_noise: bool
    ) -> None:
        """Advance ``state`` in place by ``len(z)`` steps; ``z`` has shape ``(steps, N, noise_dim)``.

        ``first_step`` is the global index of the first step (for schedules); ``aux`` supplies any
        randomness beyond the Brownian increments; ``z`` may be overwritten only if ``owns_noise``.
        """

    def parameters(self) -> dict:
        """Parameters reported on divergence."""
        return {}

    def steps_available(self) -> int | None:
        """Number of steps a schedule covers (``None``: unlimited)."""
        return None


# --- discrete methods ------------------------------------------------------------------------------------


def _schedule(value: float | Sequence[float] | np.ndarray, check: Callable[[float, str], float], name: str):
    if np.ndim(value) == 0:  # a number: checked as given, so a bool or a complex is refused, not converted
        return check(value, name)
    array = as_real_array(value, name)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D schedule, got shape {array.shape}")
    for k, entry in enumerate(array):
        check(float(entry), f"{name}[{k}]")
    array = array.copy()
    array.setflags(write=False)
    return array


def _at(value: float | np.ndarray, k: int) -> float:
    return value if isinstance(value, float) else float(value[k])


def _canonical_sigma(eta: float | np.ndarray, sigma: float | None) -> float:
    if sigma is None:
        base = eta if isinstance(eta, float) else float(eta[0])
        return base**-0.5
    return check_real(sigma, "sigma (noise scale)", low=0.0)


def _check_problem(problem: Problem) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a theory.problems.Problem, got {type(problem).__name__}")
    return problem


class _OnProblem(Method):
    """Shared plumbing of the discrete methods: a :class:`~theory.problems.Problem`, ``eta`` and ``sigma``."""

    problem: Problem
    eta: float | np.ndarray
    sigma: float | None
    _label = ""
    _reported = ("eta", "sigma")

    def _validate(self) -> None:
        _check_problem(self.problem)
        object.__setattr__(self, "eta", _schedule(self.eta, check_learning_rate, "eta (learning rate)"))
        if getattr(self, "beta", None) is not None:
            object.__setattr__(self, "beta", _schedule(self.beta, check_momentum, "beta"))
        object.__setattr__(self, "sigma", _canonical_sigma(self.eta, self.sigma))
        if getattr(self, "time_scale", None) is not None:
            object.__setattr__(self, "time_scale", check_positive(self.time_scale, "time_scale"))

    @property
    def name(self) -> str:
        return f"{self._label} on {self.problem.name}"

    @property
    def time_step(self) -> float:
        scale = getattr(self, "time_scale", None)
        return scale if scale is not None else _at(self.eta, 0)

    @property
    def noise_dim(self) -> int:
        return self.problem.noise_dim

    @property
    def observed_dim(self) -> int:
        return self.problem.dim

    def parameters(self) -> dict:
        values = {name: getattr(self, name) for name in self._reported}
        return {k: v if not isinstance(v, np.ndarray) else f"schedule[{v.size}]" for k, v in values.items()}

    def steps_available(self) -> int | None:
        sizes = [getattr(self, k).size for k in ("eta", "beta") if isinstance(getattr(self, k, None), np.ndarray)]
        return min(sizes) if sizes else None


@dataclass(frozen=True, eq=False)
class SGDM(_OnProblem):
    r"""Normalized SGDM (paper eq. (3)) on a :class:`~theory.problems.Problem`, constant or scheduled.

    .. math:: m_{k+1}=\beta_km_k+(1-\beta_k)g_k,\qquad x_{k+1}=x_k-\eta_km_{k+1},\qquad
              g_k=\nabla\mathcal L(x_k)+\sigma B(x_k)z_k

    ``eta`` and ``beta`` are numbers or per-step schedules; ``sigma=None`` is the canonical
    :math:`\sigma=\eta_0^{-1/2}` (THEORY.md 2.2).  The state is :math:`(x,m)`, :math:`m_0` = ``m0`` (default 0).
    ``time_scale`` is the continuous time per step used to align with other methods (default :math:`\eta_0`).
    """

    problem: Problem
    eta: float | np.ndarray
    beta: float | np.ndarray = 0.9
    sigma: float | None = None
    m0: np.ndarray | None = None
    time_scale: float | None = None

    _label = "SGDM"
    _reported = ("eta", "beta", "sigma")

    def __post_init__(self) -> None:
        self._validate()
        if self.m0 is not None:
            m0 = np.asarray(self.m0, dtype=np.float64).reshape(-1)
            if m0.shape != (self.problem.dim,) or not np.all(np.isfinite(m0)):
                raise ValueError(f"m0 must be a finite vector of length {self.problem.dim}")
            object.__setattr__(self, "m0", m0)

    def initial_state(self, x0: np.ndarray) -> np.ndarray:
        m0 = np.zeros(self.problem.dim) if self.m0 is None else self.m0
        return np.ascontiguousarray(np.concatenate([x0, np.broadcast_to(m0, x0.shape)], axis=1))

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        d = self.problem.dim
        x, m = state[:, :d], state[:, d:]
        grad, noise = self.problem._gradient_fn, self.problem._noise_apply_fn
        constant = self.problem.constant_noise_factor
        if constant is not None and isinstance(self.eta, float) and isinstance(self.beta, float):
            # additive noise, constant hyper-parameters: the noise of the whole block is one matrix product
            beta, keep = self.beta, 1.0 - self.beta
            kicks = z @ (keep * self.sigma * constant.T)
            for j in range(z.shape[0]):
                g = grad(x)
                g *= keep
                m *= beta
                m += g
                m += kicks[j]
                x -= self.eta * m
            return
        for j in range(z.shape[0]):
            k = first_step + j
            beta = _at(self.beta, k)
            g = grad(x)
            g += self.sigma * noise(x, z[j])
            m *= beta
            m += (1.0 - beta) * g
            x -= _at(self.eta, k) * m


@dataclass(frozen=True, eq=False)
class SGD(_OnProblem):
    r"""SGD :math:`x_{k+1}=x_k-\eta_k\big(\nabla\mathcal L(x_k)+\sigma B(x_k)z_k\big)` (THEORY.md 1.2).

    Constant or scheduled :math:`\eta_k`.

    Same conventions as :class:`SGDM` with :math:`\beta=0`; no momentum state is kept.
    """

    problem: Problem
    eta: float | np.ndarray
    sigma: float | None = None
    time_scale: float | None = None

    _label = "SGD"

    def __post_init__(self) -> None:
        self._validate()

    def initial_state(self, x0: np.ndarray) -> np.ndarray:
        return np.array(x0, dtype=np.float64, order="C", copy=True)

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        grad, noise = self.problem._gradient_fn, self.problem._noise_apply_fn
        constant = self.problem.constant_noise_factor
        if constant is not None and isinstance(self.eta, float):
            # additive noise: one matrix product for the whole block instead of one per step
            kicks = z @ (-self.eta * self.sigma * constant.T)
            for j in range(z.shape[0]):
                state -= self.eta * grad(state)
                state += kicks[j]
            return
        for j in range(z.shape[0]):
            g = grad(state)
            g += self.sigma * noise(state, z[j])
            state -= _at(self.eta, first_step + j) * g


@dataclass(frozen=True, eq=False)
class SVAG(_OnProblem):
    r"""SVAG (Definition 5.1; THEORY.md 6.1), optionally with momentum (THEORY.md 6.5, :math:`\beta` fixed).

    .. math:: g^{\rm SVAG}=r_1\big(\nabla\mathcal L+\sigma Bz^{(1)}\big)+r_2\big(\nabla\mathcal L+\sigma Bz^{(2)}\big),
              \qquad
              m_{k+1}=\beta m_k+(1-\beta)g^{\rm SVAG}_k,\qquad x_{k+1}=x_k-\tfrac\eta\ell\,m_{k+1}

    One step is :math:`\eta/\ell` of continuous time.  The two samples are built from the Brownian
    normal :math:`\xi` and an independent :math:`\zeta` by the rotation
    :math:`z^{(1)}=(r_1\xi+r_2\zeta)/\sqrt\ell,\ z^{(2)}=(r_2\xi-r_1\zeta)/\sqrt\ell` — i.i.d. standard
    normal, with :math:`r_1z^{(1)}+r_2z^{(2)}=\sqrt\ell\,\xi`, so SVAG shares the Brownian path of the SDE.
    """

    problem: Problem
    eta: float
    ell: float = 1.0
    sigma: float | None = None
    beta: float = 0.0

    _reported = ("eta", "ell", "sigma", "beta")

    def __post_init__(self) -> None:
        self._validate()
        if not isinstance(self.eta, float) or not isinstance(self.beta, float):
            raise ValueError("SVAG takes a constant eta and beta (schedules: use SGDM with eta / ell)")
        svag_coefficients(self.ell)  # validates ell

    @property
    def name(self) -> str:
        return f"SVAG(ell={self.ell:g}) on {self.problem.name}"

    @property
    def time_step(self) -> float:
        return self.eta / self.ell

    def initial_state(self, x0: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([x0, np.zeros_like(x0)], axis=1))

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        d = self.problem.dim
        x, m = state[:, :d], state[:, d:]
        r1, r2 = svag_coefficients(self.ell)
        root = math.sqrt(self.ell)
        grad, noise = self.problem._gradient_fn, self.problem._noise_apply_fn
        zeta = aux.standard_normal(z.shape)
        lr = self.eta / self.ell
        for j in range(z.shape[0]):
            z1 = (r1 * z[j] + r2 * zeta[j]) / root
            z2 = (r2 * z[j] - r1 * zeta[j]) / root
            g1 = grad(x) + self.sigma * noise(x, z1)
            g2 = grad(x) + self.sigma * noise(x, z2)
            m *= self.beta
            m += (1.0 - self.beta) * (r1 * g1 + r2 * g2)
            x -= lr * m


# --- the engine ------------------------------------------------------------------------------------------


def _generators(seed: Seed, count: int) -> list[np.random.Generator]:
    """``count`` independent generators derived from ``seed``; the first is the Brownian (shared) stream."""
    if isinstance(seed, np.random.Generator):
        return [seed, *seed.spawn(count - 1)]
    if isinstance(seed, np.random.SeedSequence):
        sequence = seed
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        sequence = np.random.SeedSequence(int(seed))
    else:
        raise ValueError(f"seed must be a non-negative int, a SeedSequence or a numpy Generator, got {seed!r}")
    return [np.random.default_rng(child) for child in sequence.spawn(count)]


def _restored(generator: np.random.Generator, state: dict) -> np.random.Generator:
    copy = np.random.Generator(type(generator.bit_generator)())
    copy.bit_generator.state = state
    return copy


def _step_ratios(methods: Sequence[Method]) -> tuple[float, list[int]]:
    fine = min(m.time_step for m in methods)
    ratios = []
    for method in methods:
        ratio = method.time_step / fine
        rounded = round(ratio)
        if rounded < 1 or abs(ratio - rounded) > 1e-9 * ratio:
            raise ValueError(
                f"time steps must be integer multiples of the finest one ({fine:g}); "
                f"{method.name} has {method.time_step:g}"
            )
        ratios.append(rounded)
    coarse = max(ratios)
    for method, ratio in zip(methods, ratios, strict=True):
        if coarse % ratio:
            raise ValueError(
                f"{method.name}: its step must divide the coarsest step ({coarse} fine steps), got {ratio}"
            )
    return fine, ratios


def _initial_points(x0: np.ndarray | Sequence[float] | float, n_paths: int, dim: int) -> np.ndarray:
    if np.iscomplexobj(x0):
        raise ValueError("x0 must be real (float64), got a complex array")
    try:
        x0 = np.asarray(x0, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"x0 must be an array of real numbers, got {x0!r}") from exc
    if x0.ndim <= 1:
        x0 = x0.reshape(-1)
        if x0.shape != (dim,):
            raise ValueError(f"x0 must have shape ({dim},) or ({n_paths}, {dim}), got {x0.shape}")
        x0 = np.broadcast_to(x0, (n_paths, dim))
    if x0.shape != (n_paths, dim):
        raise ValueError(f"x0 must have shape ({dim},) or ({n_paths}, {dim}), got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        raise ValueError("x0 must be finite")
    return np.array(x0, dtype=np.float64, order="C")


def _check_count(value: int, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum=minimum)


def _first_bad(state: np.ndarray, bound: float) -> tuple[int, float] | None:
    magnitude = np.abs(state).max(axis=1)
    bad = ~(magnitude <= bound)
    if not bad.any():
        return None
    path = int(np.flatnonzero(bad)[0])
    return path, float(magnitude[path])


def _aggregate(fine: np.ndarray, ratio: int) -> np.ndarray:
    """Normalized sums of ``ratio`` consecutive fine normals: the standardized Brownian increment of a coarse step."""
    if ratio == 1:
        return fine
    size, n_paths, noise_dim = fine.shape
    z = fine.reshape(size // ratio, ratio, n_paths, noise_dim).sum(axis=1)
    z *= 1.0 / math.sqrt(ratio)
    return z


@dataclass
class _Runner:
    """Mutable bookkeeping of one method inside :func:`run_lockstep`."""

    method: Method
    ratio: int
    state: np.ndarray
    stream: np.random.Generator
    aux: np.random.Generator
    steps_done: int = 0

    def advance(self, fine: np.ndarray, owns: bool, stream_state: dict, bound: float) -> None:
        z = _aggregate(fine, self.ratio)
        owns = owns or self.ratio > 1
        steps = z.shape[0]
        saved = (self.state.copy(), self.aux.bit_generator.state) if steps > 1 else None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.method.advance(self.state, z, self.steps_done, self.aux, owns)
        if _first_bad(self.state, bound) is not None:
            self._locate_divergence(saved, fine.shape, stream_state, bound)
        self.steps_done += steps

    def _locate_divergence(self, saved, fine_shape, stream_state: dict, bound: float) -> None:
        """Replay the failed block one step at a time (same draws) and raise at the first bad step."""
        step = self.steps_done
        if saved is not None:
            self.state[...] = saved[0]
            self.aux.bit_generator.state = saved[1]
            fine = _restored(self.stream, stream_state).standard_normal(fine_shape)
            z = _aggregate(fine, self.ratio)
            for j in range(z.shape[0]):
                step = self.steps_done + j
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    self.method.advance(self.state, z[j : j + 1], step, self.aux, False)
                if _first_bad(self.state, bound) is not None:
                    break
        path, value = _first_bad(self.state, bound)
        method = self.method
        raise DivergenceError(method.name, method.parameters(), step, (step + 1) * method.time_step, path, value, bound)


def run_lockstep(
    methods: Sequence[Method],
    x0: np.ndarray | Sequence[float] | float,
    n_periods: int,
    n_paths: int,
    seed: Seed,
    *,
    period_steps: int = 1,
    shared_noise: bool = True,
    divergence_bound: float = 1e12,
) -> Iterator[tuple[int, float, list[np.ndarray]]]:
    r"""Run ``methods`` side by side; yield ``(period, time, [x of each method])`` at every observation time.

    Observation times are :math:`t_j=j\,P`, :math:`j=0..n_{\rm periods}`, where the period :math:`P` is
    ``period_steps`` steps of the coarsest method.  With ``shared_noise`` (common random numbers) every
    method is driven by the same fine-grid normals, aggregated to its own step; otherwise each method
    draws from its own independent stream.  The yielded arrays are views of the live states (copy them
    to keep them).
    """
    if not methods:
        raise ValueError("methods must be a non-empty sequence of Method")
    for method in methods:
        if not isinstance(method, Method):
            raise ValueError(f"every method must be a theory.simulate.Method, got {type(method).__name__}")
    n_periods = _check_count(n_periods, "n_periods", minimum=0)
    n_paths = _check_count(n_paths, "n_paths")
    period_steps = _check_count(period_steps, "period_steps")
    bound = check_positive(divergence_bound, "divergence_bound")
    dims = {m.observed_dim for m in methods}
    noise_dims = {m.noise_dim for m in methods}
    if len(dims) != 1 or (shared_noise and len(noise_dims) != 1):
        raise ValueError(f"methods must share the parameter and noise dimensions, got {dims} and {noise_dims}")
    (dim,) = dims
    fine_step, ratios = _step_ratios(methods)
    unit = max(ratios)
    fine_per_period = period_steps * unit
    for method, ratio in zip(methods, ratios, strict=True):
        available = method.steps_available()
        needed = n_periods * fine_per_period // ratio
        if available is not None and available < needed:
            raise ValueError(f"{method.name}: its schedule has {available} steps, the run needs {needed}")

    start = _initial_points(x0, n_paths, dim)
    generators = _generators(seed, 2 * len(methods) + 1)
    runners = [
        _Runner(
            m,
            r,
            m.initial_state(start.copy()),
            generators[0] if shared_noise else generators[1 + i],
            generators[-1 - i],
        )
        for i, (m, r) in enumerate(zip(methods, ratios, strict=True))
    ]
    chunk = max(unit, (max(1, _CHUNK_FLOATS // (n_paths * max(noise_dims))) // unit) * unit)
    chunk = min(chunk, fine_per_period)
    buffers = {id(r.stream): np.empty((chunk, n_paths, r.method.noise_dim)) for r in runners}
    owns = len(runners) == 1 or not shared_noise

    yield 0, 0.0, [r.state[:, :dim] for r in runners]
    for period in range(1, n_periods + 1):
        remaining = fine_per_period
        while remaining:
            size = min(chunk, remaining)
            remaining -= size
            drawn = {}
            for runner in runners:
                key = id(runner.stream)
                if key not in drawn:
                    stream_state = runner.stream.bit_generator.state
                    fine = buffers[key][:size]
                    runner.stream.standard_normal(out=fine)
                    drawn[key] = (fine, stream_state)
                fine, stream_state = drawn[key]
                runner.advance(fine, owns, stream_state, bound)
        yield period, period * fine_per_period * fine_step, [r.state[:, :dim] for r in runners]


@dataclass(frozen=True)
class SimulationResult:
    """Observed parameters ``x`` (``values``, shape ``(K+1, N, d)``) at ``times`` (shape ``(K+1,)``)."""

    times: np.ndarray
    values: np.ndarray
    method: str
    parameters: dict = field(default_factory=dict)


def simulate(
    method: Method,
    x0: np.ndarray | Sequence[float] | float,
    n_steps: int,
    n_paths: int,
    seed: Seed,
    *,
    observe_every: int | None = None,
    divergence_bound: float = 1e12,
) -> SimulationResult:
    r"""Simulate ``n_paths`` independent paths of ``method`` for ``n_steps`` steps from ``x0``.

    Records :math:`x` every ``observe_every`` steps (default: only the start and the end); ``n_steps``
    must be a multiple of it.  Raises :class:`DivergenceError` if a path diverges.
    """
    n_steps = _check_count(n_steps, "n_steps")
    every = n_steps if observe_every is None else _check_count(observe_every, "observe_every")
    if n_steps % every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of observe_every ({every})")
    times, values = [], []
    for _, time, (x,) in run_lockstep(
        [method], x0, n_steps // every, n_paths, seed, period_steps=every, divergence_bound=divergence_bound
    ):
        times.append(time)
        values.append(x.copy())
    return SimulationResult(np.array(times), np.stack(values), method.name, method.parameters())
