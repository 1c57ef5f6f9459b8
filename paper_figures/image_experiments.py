"""What the empirical image figures share: run parts from JSON settings, optimizer labels, intervals as JSON.

Settings of an empirical figure hold its data, model and schedule as plain JSON (they key the cached
figure data); :func:`run_parts` turns them into the frozen :mod:`empirical.config` objects every member
run is built from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from empirical.config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, SvagConfig, TrainConfig
from empirical.data import FASHION_MNIST_DEFAULT_ROOT
from paper_figures.registry import FigureContext
from paper_figures.stats import Interval

__all__ = [
    "OPTIMIZER_LABELS",
    "describe_setup",
    "fashion_mnist_root",
    "interval_record",
    "optimizer_for",
    "optimizer_label",
    "run_parts",
    "runs_over_seeds",
]

OPTIMIZER_LABELS = ("SGD", "SGDM")
_DISPLAY = {
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "image_folder": "ImageNet",
    "mlp": "MLP",
    "small_cnn": "small CNN",
    "resnet32": "ResNet-32",
    "resnet50": "ResNet-50",
}


def fashion_mnist_root(context: FigureContext, figure_id: str) -> str:
    """The Fashion-MNIST folder of ``--data fashion_mnist=PATH``, else the Debian package's folder."""
    return context.data_path("fashion_mnist", figure_id, "Fashion-MNIST", default=FASHION_MNIST_DEFAULT_ROOT)


def run_parts(settings: Mapping[str, Any]) -> tuple[DataConfig, ModelConfig, dict[str, Any]]:
    """Data and model configs and the ``TrainConfig`` keywords (milestones as a tuple) of ``settings``."""
    data = settings["data"]
    train = dict(settings["train"])
    train["milestones"] = tuple(train["milestones"])
    return (
        DataConfig(data["name"], dict(data["options"]), train_subset=data["train_subset"]),
        ModelConfig(settings["model"]["name"], dict(settings["model"]["options"])),
        train,
    )


def describe_setup(settings: Mapping[str, Any]) -> dict[str, str]:
    """Readable dataset and model names of ``settings`` for figure captions (e.g. ``MLP (64 hidden)``)."""
    model = settings["model"]
    label = _DISPLAY.get(model["name"], model["name"])
    if model["name"] == "mlp":
        label += f" ({'-'.join(map(str, model['options'].get('hidden', [128])))} hidden)"
    elif model["name"] == "small_cnn":
        label += f" (width {model['options'].get('width', 32)})"
    return {"dataset": _DISPLAY.get(settings["data"]["name"], settings["data"]["name"]), "model": label}


def runs_over_seeds(
    settings: Mapping[str, Any],
    optimizer: OptimizerConfig,
    train: TrainConfig,
    label: str,
    svag: SvagConfig | None = None,
) -> list[RunConfig]:
    """One run per seed of ``settings["seeds"]`` on its data, model and device, named ``label,seed=S``."""
    data, model, _ = run_parts(settings)
    return [
        RunConfig(
            data=data,
            model=model,
            optimizer=optimizer,
            train=train,
            svag=svag or SvagConfig(),
            seed=seed,
            device=settings["device"],
            name=f"{label},seed={seed}",
        )
        for seed in settings["seeds"]
    ]


def optimizer_for(label: str, eta: float, beta: float, weight_decay: float = 0.0) -> OptimizerConfig:
    r"""SGD (``"SGD"``) or normalized SGDM (``"SGDM"``, paper eq. (3)) at effective learning rate :math:`\eta`."""
    if label not in OPTIMIZER_LABELS:
        raise ValueError(f"optimizer label must be one of {list(OPTIMIZER_LABELS)}, got {label!r}")
    if label == "SGD":
        return OptimizerConfig("sgd", eta=eta, momentum=0.0, weight_decay=weight_decay)
    return OptimizerConfig("normalized_sgdm", eta=eta, momentum=beta, weight_decay=weight_decay)


def optimizer_label(config: RunConfig) -> str:
    """``"SGD"`` for plain SGD, ``"SGDM"`` for a momentum method."""
    return "SGD" if config.optimizer.name == "sgd" else "SGDM"


def interval_record(interval: Interval, scale: float = 100.0, digits: int = 1) -> dict[str, Any]:
    """An interval as JSON (mean, low, high, n, level, whether it excludes 0) and its text ``mean ± half``.

    The text is in ``scale`` units (100: percent, or percentage points for a difference of accuracies).
    """
    return {
        **dataclasses.asdict(interval),
        "excludes_zero": interval.excludes_zero(),
        "text": interval.format(digits, scale),
    }
