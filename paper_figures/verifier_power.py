r"""The verifier's own power: detection rate of each claim check against the size of an error in SGDM.

Figure ID ``fig_verifier_power`` (built on demand: ``mvm figures --quick --only fig_verifier_power``; it is not part
of the default build, which it would lengthen by about an hour).  For a learning-rate error (eq. (3) run at
:math:`(1+\epsilon)\eta`) and a gradient-noise-variance error (:math:`(1+\epsilon)\sigma^2`) of the simulated SGDM,
each claim that verifies ``sgdm`` is run on many seeds (:mod:`proofs_check.power`); the detection rate at
:math:`\epsilon` is the fraction of seeds on which at least one of the claim's sub-results fails, with its Wilson
95% interval, and the false-failure rate (:math:`\epsilon=0`) the same fraction for the package's own SGDM.  The
table gives, per claim and error kind, the smallest :math:`\epsilon` from which every larger size is detected on at
least 95% of the seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, PALETTE, new_figure, save_figure
from proofs_check.power import PowerStore, detection_rates, run_power_study, smallest_detected

__all__ = ["POWER_CLAIMS", "VERIFIER_POWER_FIGURE", "plot_verifier_power"]

#: Per error kind, the claims run: theorem_3_5 and momentum_matters (which every learning-rate and noise mutant must
#: break) and the coupling gap (cheap).  same_sde (13 s a run) and theorem_4_5 (12 s) are left out of the quick study
#: for time; the kill matrix shows them failing the 10% learning-rate error.
POWER_CLAIMS = {
    "learning_rate": ("theorem_3_5", "momentum_matters", "coupling"),
    "noise_variance": ("theorem_3_5", "momentum_matters", "coupling"),
}
_KIND_LABELS = {"learning_rate": "learning-rate error", "noise_variance": "noise-variance error"}


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "tiny":
        return {"claims": {"noise_variance": ["coupling"]}, "sizes": [0.2], "seeds": [0, 1], "quick": True}
    if context.scale == "quick":
        return {
            "claims": {kind: list(ids) for kind, ids in POWER_CLAIMS.items()},
            "sizes": [0.01, 0.02, 0.05, 0.1, 0.2],
            "seeds": list(range(1000, 1020)),
            "quick": True,
        }
    return {
        "claims": {
            "learning_rate": ["momentum_matters", "coupling"],
            "noise_variance": ["momentum_matters", "coupling"],
        },
        "sizes": [0.01, 0.02],
        "seeds": list(range(2000, 2005)),
        "quick": False,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    store = PowerStore(context.cache_dir / "power")

    def report(done: int, total: int) -> None:
        if context.progress:
            print(f"fig_verifier_power: {done}/{total} runs", file=sys.stderr, flush=True)

    outcomes = run_power_study(
        settings["claims"],
        settings["sizes"],
        settings["seeds"],
        store,
        quick=settings["quick"],
        on_task=report,
    )
    rates = detection_rates(outcomes)
    table = []
    for kind, by_id in rates.items():
        for claim_id in settings["claims"][kind]:
            if claim_id not in by_id:
                continue
            reference = by_id[claim_id].get(0.0, {})
            table.append(
                {
                    "kind": kind,
                    "claim": claim_id,
                    "smallest_detected": smallest_detected(by_id[claim_id]),
                    "false_failure_rate": reference.get("rate"),
                    "false_failures": reference.get("failures"),
                    "trials": reference.get("trials"),
                }
            )
    worst_sub = {}
    for by_id in rates.values():
        for claim_id, by_size in by_id.items():
            if "." in claim_id and 0.0 in by_size:
                worst_sub[claim_id] = by_size[0.0]["rate"]
    summary = {
        f"{row['claim']} ({row['kind']})": (
            f"detects >= {row['smallest_detected']:.0%} with 95% probability"
            if row["smallest_detected"] is not None
            else "no size detected with 95% probability"
        )
        + f"; false failures {row['false_failures']}/{row['trials']}"
        for row in table
    }
    summary["largest sub-result false-failure rate"] = max(worst_sub.values(), default=0.0)
    data = {
        "rates": {
            kind: {cid: {str(s): v for s, v in by.items()} for cid, by in ids.items()} for kind, ids in rates.items()
        },
        "table": table,
        "sub_result_false_failure_rates": worst_sub,
        "summary": summary,
    }
    return Computed(data=data, seeds=tuple(settings["seeds"]))


def plot_verifier_power(data: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """Detection rate against error size (log axis) per claim, one panel per error kind; false failures at 0."""
    kinds = list(data["rates"])
    fig, axes = new_figure(ncols=len(kinds), width=FULL_WIDTH, height=2.6)
    for ax, kind in zip(axes[0], kinds, strict=True):
        claims = [cid for cid in data["rates"][kind] if "." not in cid]
        for i, claim_id in enumerate(claims):
            by_size = {float(s): v for s, v in data["rates"][kind][claim_id].items()}
            sizes = sorted(s for s in by_size if s > 0)
            rate = np.array([by_size[s]["rate"] for s in sizes])
            low = np.array([by_size[s]["ci_low"] for s in sizes])
            high = np.array([by_size[s]["ci_high"] for s in sizes])
            color = PALETTE[i % len(PALETTE)]
            shift = 1.06 ** (i - (len(claims) - 1) / 2)  # a small offset in x so that equal rates stay visible
            x = np.array(sizes) * shift
            ax.errorbar(x, rate, yerr=[rate - low, high - rate], color=color, marker="o", ms=3, capsize=2,
                        label=claim_id)  # fmt: skip
            if 0.0 in by_size:
                ax.plot([min(sizes) / 2 * shift], [by_size[0.0]["rate"]], marker="x", color=color, ms=4)
        ax.axhline(0.95, color="0.5", lw=0.6, ls="--")
        ax.axhline(0.05, color="0.5", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("relative error $\\epsilon$ of SGDM (x: reference, $\\epsilon=0$)")
        ax.set_ylabel("detection rate")
        ax.set_title(_KIND_LABELS.get(kind, kind))
    axes[0][-1].legend(loc="lower right", fontsize=6)
    return save_figure(fig, stem)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    return plot_verifier_power(data, stem)


VERIFIER_POWER_FIGURE = register(
    FigureSpec(
        figure_id="fig_verifier_power",
        title="Power of the claim checks: detection rate against the size of an SGDM error",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
        default=False,
    )
)
