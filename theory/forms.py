r"""Symbolic proofs that the momentum parameterisations agree, and of the coupling identity.

Each proof is an induction on the step index checked by SymPy: an *invariant* relates the states of two
methods at step :math:`k` (for example :math:`m_k=(1-\beta)b_k` and equal :math:`x_k`), it holds at
:math:`k=0`, and one step of both updates with the same gradient :math:`g_k` preserves it (the gradient
oracle returns the same :math:`g_k` because both methods query it at the same :math:`x_k` with the same
sample).  A proof returns the residuals of the invariant after one step; it *holds* when SymPy reduces all
of them to zero.  The update rules are arguments, so a test can feed a wrong rule and watch the proof fail.

Results (THEORY.md sections 1.3, 1.4 and 8; paper eqs. (1) and (3), Definition 3.3):

* PyTorch heavy ball (eq. (1)) with :math:`\gamma` equals normalized SGDM (eq. (3)) with
  :math:`\eta=\gamma/(1-\beta)`, for any learning-rate schedule :math:`\gamma_k=\eta_k(1-\beta)`
  (but not for a momentum schedule :math:`\beta_k`).
* Polyak's two-step form and the MSGD form are the same method.
* PyTorch Nesterov equals normalized Nesterov under the same map.
* ``torch.optim.SGD(lr=eta, momentum=beta, dampening=beta)`` is **not** eq. (3): its first step moves by
  :math:`\eta g_0` instead of :math:`\eta(1-\beta)g_0`.
* Coupling identity: :math:`y_k=x_k-\frac{\eta\beta}{1-\beta}m_k` obeys :math:`y_{k+1}=y_k-\eta g_k`; with a
  schedule, :math:`y_k=x_k-\beta_kD_km_k` obeys :math:`y_{k+1}=y_k-\bar\eta_kg_k` where :math:`\bar\eta_k`
  is the averaged schedule of :func:`theory.params.averaged_lr_schedule`.  This derives :math:`\bar\eta_k`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import sympy as sp

__all__ = [
    "Proof",
    "Step",
    "all_proofs",
    "dampening_first_step_gap",
    "format_proofs",
    "msgd_step",
    "normalized_nesterov_step",
    "normalized_step",
    "polyak_step",
    "prove_coupling_identity",
    "prove_msgd_equivalence",
    "prove_nesterov_equivalence",
    "prove_polyak_equivalence",
    "prove_pytorch_equivalence",
    "prove_scheduled_coupling_identity",
    "pytorch_nesterov_step",
    "pytorch_step",
    "sgd_step",
]

#: One step of an update rule, ``step(x, state, g, lr, beta) -> (x, state)``.  The rules below use arithmetic
#: operators only, so they take SymPy expressions (for the proofs) and NumPy arrays (for numerics) alike.
Step = Callable[..., tuple[sp.Expr, sp.Expr]]

x, g, gamma, eta = sp.symbols("x g gamma eta", real=True)
beta = sp.Symbol("beta", positive=True)
b, m, v, x_prev = sp.symbols("b m v x_prev", real=True)


@dataclass(frozen=True)
class Proof:
    """One symbolic equivalence: its statement, the invariant, and the residuals after one step."""

    name: str
    statement: str
    latex: str
    invariant: str
    residuals: tuple[sp.Expr, ...]

    @property
    def holds(self) -> bool:
        return all(sp.simplify(r) == 0 for r in self.residuals)


# --- update rules: one step of each form, gradient g given --------------------------------------------


def sgd_step(x: sp.Expr, m: sp.Expr, g: sp.Expr, eta: sp.Expr, beta: sp.Expr):
    r"""Plain SGD in the two-state signature of the momentum rules: :math:`x_{k+1}=x_k-\eta g_k`, :math:`m` and
    :math:`\beta` ignored (SGDM at :math:`\beta=0`), so it can stand wherever a :data:`Step` is expected."""
    return x - eta * g, m


def pytorch_step(x: sp.Expr, b: sp.Expr, g: sp.Expr, gamma: sp.Expr, beta: sp.Expr):
    r"""PyTorch heavy ball, paper eq. (1): :math:`b_{k+1}=\beta b_k+g_k,\ x_{k+1}=x_k-\gamma b_{k+1}`."""
    b_next = beta * b + g
    return x - gamma * b_next, b_next


def normalized_step(x: sp.Expr, m: sp.Expr, g: sp.Expr, eta: sp.Expr, beta: sp.Expr):
    r"""Normalized SGDM, paper eq. (3): :math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\eta m_{k+1}`."""
    m_next = beta * m + (1 - beta) * g
    return x - eta * m_next, m_next


def polyak_step(x: sp.Expr, x_prev: sp.Expr, g: sp.Expr, gamma: sp.Expr, beta: sp.Expr):
    r"""Polyak heavy ball: :math:`x_{k+1}=x_k-\gamma g_k+\beta(x_k-x_{k-1})`; state :math:`(x_k,x_{k-1})`."""
    return x - gamma * g + beta * (x - x_prev), x


def msgd_step(x: sp.Expr, v: sp.Expr, g: sp.Expr, gamma: sp.Expr, beta: sp.Expr):
    r"""Li-Tai-E MSGD / Zhang et al. NQM form: :math:`v_{k+1}=\beta v_k-\gamma g_k,\ x_{k+1}=x_k+v_{k+1}`."""
    v_next = beta * v - gamma * g
    return x + v_next, v_next


def pytorch_nesterov_step(x: sp.Expr, b: sp.Expr, g: sp.Expr, gamma: sp.Expr, beta: sp.Expr):
    r"""PyTorch ``nesterov=True``: :math:`b_{k+1}=\beta b_k+g_k,\ x_{k+1}=x_k-\gamma(g_k+\beta b_{k+1})`."""
    b_next = beta * b + g
    return x - gamma * (g + beta * b_next), b_next


def normalized_nesterov_step(x: sp.Expr, m: sp.Expr, g: sp.Expr, eta: sp.Expr, beta: sp.Expr):
    r"""Normalized Nesterov: :math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\eta((1-\beta)g_k+\beta m_{k+1})`."""
    m_next = beta * m + (1 - beta) * g
    return x - eta * ((1 - beta) * g + beta * m_next), m_next


# --- proofs -----------------------------------------------------------------------------------------------


@cache
def prove_pytorch_equivalence(step: Step = normalized_step, reference: Step = pytorch_step) -> Proof:
    r"""Paper eq. (1) with :math:`\gamma` equals eq. (3) with :math:`\eta=\gamma/(1-\beta)`.

    Invariant: equal :math:`x_k` and :math:`m_k=(1-\beta)b_k` (true at :math:`k=0`: :math:`m_0=b_0=0`).
    :math:`\gamma` is a free symbol per step, so the proof covers any learning-rate schedule
    :math:`\gamma_k=\eta_k(1-\beta)` with constant :math:`\beta`.
    """
    x_ref, b_ref = reference(x, b, g, gamma, beta)
    x_new, m_new = step(x, (1 - beta) * b, g, gamma / (1 - beta), beta)
    return Proof(
        name="pytorch == normalized",
        statement="SGD(lr=gamma, momentum=beta) == eq. (3) with eta = gamma/(1-beta); m = (1-beta) b",
        latex=r"\eta=\frac{\gamma}{1-\beta},\qquad m_k=(1-\beta)\,b_k",
        invariant="x equal, m = (1-beta) b",
        residuals=(sp.simplify(x_new - x_ref), sp.simplify(m_new - (1 - beta) * b_ref)),
    )


@cache
def prove_polyak_equivalence(step: Step = polyak_step, reference: Step = pytorch_step) -> Proof:
    r"""Polyak's form equals PyTorch heavy ball; invariant :math:`x_k-x_{k-1}=-\gamma b_k` (:math:`x_{-1}=x_0`)."""
    x_ref, b_ref = reference(x, b, g, gamma, beta)
    x_new, x_old = step(x, x + gamma * b, g, gamma, beta)
    return Proof(
        name="polyak == pytorch",
        statement="x_{k+1} = x_k - gamma g_k + beta (x_k - x_{k-1}) == SGD(lr=gamma, momentum=beta)",
        latex=r"x_k-x_{k-1}=-\gamma\,b_k,\qquad x_{-1}=x_0",
        invariant="x equal, x_k - x_{k-1} = -gamma b_k",
        residuals=(sp.simplify(x_new - x_ref), sp.simplify((x_new - x_old) + gamma * b_ref)),
    )


@cache
def prove_msgd_equivalence(step: Step = msgd_step, reference: Step = pytorch_step) -> Proof:
    r"""MSGD (:math:`v_{k+1}=\beta v_k-\gamma g_k`) equals PyTorch heavy ball; invariant :math:`v_k=-\gamma b_k`.

    Holds for constant :math:`\gamma`: under a learning-rate schedule MSGD weights each gradient by the rate
    of the step it entered at, PyTorch by the current one (THEORY.md 1.3).
    """
    x_ref, b_ref = reference(x, b, g, gamma, beta)
    x_new, v_new = step(x, -gamma * b, g, gamma, beta)
    return Proof(
        name="msgd == pytorch",
        statement="v_{k+1} = beta v_k - gamma g_k, x_{k+1} = x_k + v_{k+1} == SGD(lr=gamma, momentum=beta)",
        latex=r"v_k=-\gamma\,b_k=x_k-x_{k-1}",
        invariant="x equal, v = -gamma b",
        residuals=(sp.simplify(x_new - x_ref), sp.simplify(v_new + gamma * b_ref)),
    )


@cache
def prove_nesterov_equivalence(step: Step = normalized_nesterov_step, reference: Step = pytorch_nesterov_step) -> Proof:
    r"""PyTorch Nesterov with :math:`\gamma` equals normalized Nesterov with :math:`\eta=\gamma/(1-\beta)`."""
    x_ref, b_ref = reference(x, b, g, gamma, beta)
    x_new, m_new = step(x, (1 - beta) * b, g, gamma / (1 - beta), beta)
    return Proof(
        name="nesterov: pytorch == normalized",
        statement="SGD(lr=gamma, momentum=beta, nesterov=True) == normalized Nesterov, eta = gamma/(1-beta)",
        latex=r"x_{k+1}=x_k-\eta\big((1-\beta)g_k+\beta m_{k+1}\big),\qquad m_k=(1-\beta)b_k",
        invariant="x equal, m = (1-beta) b",
        residuals=(sp.simplify(x_new - x_ref), sp.simplify(m_new - (1 - beta) * b_ref)),
    )


@cache
def prove_coupling_identity(step: Step = normalized_step) -> Proof:
    r"""Coupling identity (THEORY.md section 8), exact for any loss and any noise realisation.

    .. math:: y_k:=x_k-\frac{\eta\beta}{1-\beta}m_k\ \Longrightarrow\ y_{k+1}=y_k-\eta\,g_k,
              \qquad g_k=\nabla\mathcal L(x_k)+\sigma v_k .

    :math:`y` is SGD with the gradient evaluated at the nearby :math:`x_k`; :math:`y_0=x_0` when :math:`m_0=0`.
    """
    c = eta * beta / (1 - beta)
    x_new, m_new = step(x, m, g, eta, beta)
    y, y_new = x - c * m, x_new - c * m_new
    return Proof(
        name="coupling identity",
        statement="y_k = x_k - eta*beta/(1-beta) m_k satisfies y_{k+1} = y_k - eta g_k",
        latex=r"y_k=x_k-\frac{\eta\beta}{1-\beta}m_k\ \Rightarrow\ y_{k+1}=y_k-\eta\,g_k",
        invariant="y_{k+1} - y_k + eta g_k = 0",
        residuals=(sp.simplify(y_new - y + eta * g),),
    )


@cache
def prove_scheduled_coupling_identity(step: Step = normalized_step) -> Proof:
    r"""Coupling with a schedule: the derivation of the averaged learning rate :math:`\bar\eta_k`.

    With :math:`D_k=\eta_k+\beta_{k+1}D_{k+1}` (:math:`D_K=0` at the horizon) and
    :math:`y_k=x_k-\beta_kD_km_k`,

    .. math:: y_{k+1}=y_k-\bar\eta_k\,g_k,\qquad \bar\eta_k=(1-\beta_k)D_k,

    so :math:`x_K=y_K=x_0-\sum_{k<K}\bar\eta_kg_k` for any gradient sequence (Theorem 3.5's SGD with the
    averaged schedule, THEORY.md 1.5; :func:`theory.params.averaged_lr_schedule`).
    """
    eta_k, beta_k, beta_next, d_next = sp.symbols("eta_k beta_k beta_k1 D_k1", positive=True)
    d_k = eta_k + beta_next * d_next
    x_new, m_new = step(x, m, g, eta_k, beta_k)
    y = x - beta_k * d_k * m
    y_new = x_new - beta_next * d_next * m_new
    return Proof(
        name="coupling identity with a schedule",
        statement="y_k = x_k - beta_k D_k m_k, D_k = eta_k + beta_{k+1} D_{k+1}: y_{k+1} = y_k - etabar_k g_k",
        latex=r"y_k=x_k-\beta_kD_km_k\ \Rightarrow\ y_{k+1}=y_k-\bar\eta_k g_k,\quad \bar\eta_k=(1-\beta_k)D_k",
        invariant="y_{k+1} - y_k + (1-beta_k) D_k g_k = 0",
        residuals=(sp.simplify(y_new - y + (1 - beta_k) * d_k * g),),
    )


def dampening_first_step_gap() -> sp.Expr:
    r"""First-step displacement of ``SGD(lr=eta, momentum=beta, dampening=beta)`` minus that of eq. (3).

    PyTorch sets :math:`b_1=g_0` on the first step whatever the dampening, so it moves by :math:`\eta g_0`
    while eq. (3) moves by :math:`\eta(1-\beta)g_0`: the gap is :math:`-\eta\beta g_0\neq0` (THEORY.md 1.4,
    oracle 2).
    """
    x_dampened = x - eta * g
    x_normalized, _ = normalized_step(x, sp.Integer(0), g, eta, beta)
    return sp.simplify(x_dampened - x_normalized)


@lru_cache(maxsize=1)
def all_proofs() -> tuple[Proof, ...]:
    """Every equivalence of this module with the default (correct) update rules."""
    return (
        prove_pytorch_equivalence(),
        prove_polyak_equivalence(),
        prove_msgd_equivalence(),
        prove_nesterov_equivalence(),
        prove_coupling_identity(),
        prove_scheduled_coupling_identity(),
    )


def format_proofs(latex: bool = False) -> str:
    """Human-readable report of :func:`all_proofs` and the dampening caveat (``mvm derive forms``)."""
    lines = []
    for proof in all_proofs():
        verdict = "holds" if proof.holds else "FAILS"
        body = proof.latex if latex else proof.statement
        lines.append(f"[{verdict}] {proof.name}: {body}")
        lines.append(f"         invariant: {proof.invariant}")
    gap = dampening_first_step_gap()
    gap_text = sp.latex(gap) if latex else str(gap)
    lines.append(f"[differs] SGD(lr=eta, momentum=beta, dampening=beta) vs eq. (3): x_1 gap = {gap_text}")
    lines.append(r"effective learning rate: eta = gamma / (1 - beta)" if not latex else r"\eta=\gamma/(1-\beta)")
    return "\n".join(lines)
