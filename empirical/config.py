r"""Experiment configs: frozen dataclasses read from one TOML file per experiment and validated at the boundary.

A config file has the sections below (``configs/*.toml`` holds worked examples, paper scale included)::

    name = "cifar10_resnet32_sgdm"      # a label; not part of the result key
    seed = 0
    device = "cpu"                      # "cpu", "cuda" or "cuda:N"

    [data]                              # name + the loader's options (empirical.data.DATASETS)
    name = "cifar10"
    root = "/data/cifar-10-batches-py"
    few_shot_k = 0                      # > 0: k training examples per class (few-shot setting)
    train_subset = 0                    # > 0: train on this many examples, one fixed subset for every seed

    [model]                             # name + the builder's options (empirical.models.MODELS)
    name = "resnet32"

    [optimizer]                         # "sgd" | "pytorch_sgdm" | "normalized_sgdm"
    name = "normalized_sgdm"
    eta = 0.2                           # effective learning rate; or `lr` = the optimizer's own rate
    momentum = 0.9
    weight_decay = 5e-4

    [train]
    batch_size = 512
    unit = "epoch"                      # unit of length, milestones, warmup, eval_every, checkpoint_every
    length = 160
    milestones = [80, 120]
    lr_decay = 0.1
    eval_every = 1
    checkpoint_every = 10
    precision = "bf16"                  # "fp32" | "bf16" | "fp16" (autocast; float32 master weights)
    channels_last = true                # convnets: NHWC parameters and inputs (not part of the key)
    compile = false                     # torch.compile the model (not part of the key)

    [svag]                              # Definition 5.1 through empirical.svag.svag_schedule
    ell = 4
    momentum_scaling = "fixed"

    [grid]                              # optional: one run per combination (dotted paths -> lists)
    "optimizer.momentum" = [0.0, 0.9]
    seed = [0, 1, 2]
    vectorize = true                    # train compatible members as one torch.func ensemble

The learning rate is given either as ``eta``, the effective learning rate :math:`\eta` of paper eq. (3) at
which SGD and SGDM are compared, or as ``lr``, the optimizer's own rate (for ``pytorch_sgdm`` that is
PyTorch's :math:`\gamma=\eta(1-\beta)`); runs always record both.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirical.data import TEXT_DATASETS, check_dataset_options
from empirical.models import TEXT_MODELS, check_model_options
from empirical.optim import check_weight_decay
from empirical.svag import TrainSchedule, svag_schedule
from theory.params import check_learning_rate, check_momentum
from theory.svag import check_svag_factor
from theory.validation import (
    ParameterTypeError,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_string,
    describe,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DTYPES",
    "MOMENTUM_SCALINGS",
    "OPTIMIZERS",
    "PRECISIONS",
    "UNITS",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "SvagConfig",
    "TrainConfig",
    "config_from_dict",
    "expand_grid",
    "load_config",
]

OPTIMIZERS = ("sgd", "pytorch_sgdm", "normalized_sgdm")
UNITS = ("epoch", "step")
DTYPES = ("float32", "float64")
PRECISIONS = ("fp32", "bf16", "fp16")
MOMENTUM_SCALINGS = ("fixed", "underdamped")


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum=minimum)


def _check_duration(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``), kept as an int when it is integral (stable keys)."""
    number = check_real(value, name, low=0.0, low_open=not allow_zero)
    return int(number) if number.is_integer() else number


def _check_milestones(value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise ParameterTypeError(f"train.milestones must be a list of numbers (durations), got {describe(value)}")
    return tuple(_check_duration(m, f"train.milestones[{i}]") for i, m in enumerate(value))


@dataclass(frozen=True)
class DataConfig:
    """Dataset ``name`` (a key of :data:`empirical.data.DATASETS`), its loader ``options``, few-shot ``k``.

    ``train_subset`` > 0 trains on that many training examples, one fixed subset
    (:func:`empirical.data.fixed_subset`) shared by every seed and optimizer; 0 uses them all.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    few_shot_k: int = 0
    train_subset: int = 0

    def __post_init__(self) -> None:
        check_string(self.name, "data.name")
        check_dataset_options(self.name, self.options)  # the values are kept as given: they are part of the key
        check_int(self.few_shot_k, "data.few_shot_k", minimum=0, note="0: all training examples")
        if self.train_subset:
            object.__setattr__(self, "train_subset", _check_positive_int(self.train_subset, "data.train_subset"))
        object.__setattr__(self, "options", dict(self.options))


@dataclass(frozen=True)
class ModelConfig:
    """Model ``name`` (a key of :data:`empirical.models.MODELS`) and its builder ``options``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_string(self.name, "model.name")
        check_model_options(self.name, self.options)  # the values are kept as given: they are part of the key
        object.__setattr__(self, "options", dict(self.options))


@dataclass(frozen=True)
class OptimizerConfig:
    r"""Optimizer, learning rate and weight decay.

    Exactly one of ``eta`` (effective learning rate :math:`\eta`) and ``lr`` (the optimizer's own rate:
    :math:`\eta` for ``sgd`` and ``normalized_sgdm``, :math:`\gamma=\eta(1-\beta)` for ``pytorch_sgdm``).
    ``sgd`` has no momentum; ``normalized_sgdm`` is :class:`empirical.optim.NormalizedSGDM` (paper eq. (3));
    ``pytorch_sgdm`` is ``torch.optim.SGD(momentum=beta, dampening=0)`` (paper eq. (1)).
    """

    name: str
    eta: float | None = None
    lr: float | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_choice(self.name, "optimizer.name", OPTIMIZERS)
        check_bool(self.nesterov, "optimizer.nesterov")
        if (self.eta is None) == (self.lr is None):
            raise ValueError("optimizer needs exactly one of `eta` (effective learning rate) and `lr`")
        if self.eta is not None:
            object.__setattr__(self, "eta", check_learning_rate(self.eta, "optimizer.eta (effective learning rate)"))
        else:
            object.__setattr__(self, "lr", check_learning_rate(self.lr, "optimizer.lr"))
        object.__setattr__(self, "momentum", check_momentum(self.momentum, "optimizer.momentum (beta)"))
        object.__setattr__(self, "weight_decay", check_weight_decay(self.weight_decay))
        if self.name == "sgd" and (self.momentum != 0.0 or self.nesterov):
            raise ValueError(
                "optimizer 'sgd' has no momentum; use 'normalized_sgdm' or 'pytorch_sgdm' for momentum > 0"
            )

    @property
    def effective_lr(self) -> float:
        r"""The effective learning rate :math:`\eta` (THEORY.md 1.3)."""
        if self.eta is not None:
            return self.eta
        assert self.lr is not None
        return self.lr / (1.0 - self.momentum) if self.name == "pytorch_sgdm" else self.lr

    def native_lr(self, eta: float) -> float:
        r"""The rate to hand the optimizer when the effective rate is ``eta``: :math:`\gamma=\eta(1-\beta)` for
        ``pytorch_sgdm`` (exactly ``lr`` when no schedule changes it), else :math:`\eta`."""
        if self.name != "pytorch_sgdm":
            return eta
        if self.lr is not None and eta == self.effective_lr:
            return self.lr  # the user's number, free of the round trip through eta
        return eta * (1.0 - self.momentum)


@dataclass(frozen=True)
class TrainConfig:
    """Batch size and schedule; all durations are in ``unit`` (``"epoch"`` or ``"step"``).

    ``eval_every`` evaluates train loss/accuracy on ``eval_train_samples`` training examples and test loss
    and accuracy on ``eval_test_samples`` test examples (all when 0; the subsets are fixed, the same for
    every seed and optimizer); ``checkpoint_every`` 0 never checkpoints; ``log_every`` steps between
    progress updates and divergence checks.  Under SVAG every duration is scaled by :math:`\\ell` in steps,
    so curves line up in SDE time.  ``sync_batchnorm`` (data-parallel runs only, :mod:`empirical.distributed`)
    normalises BatchNorm layers with the statistics of the global batch instead of each device's shard.

    ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``) runs forward pass, loss and evaluation under autocast in
    that dtype, fp16 with a gradient scaler; parameters and optimizer state stay in ``dtype``, which must then be
    float32 (:mod:`empirical.precision`).  ``amp_bf16 = true`` is the old spelling of ``precision = "bf16"``
    (accepted; the two spellings give one result key).  ``channels_last`` (convolutional models only) and
    ``compile`` (:func:`torch.compile`) choose kernels, not the computed function, and are not part of the key.
    """

    batch_size: int
    length: float
    unit: str = "epoch"
    milestones: tuple[float, ...] = ()
    lr_decay: float = 0.1
    warmup: float = 0
    cosine: bool = False
    eval_every: float = 1
    eval_train_samples: int = 10000
    eval_test_samples: int = 0
    eval_batch_size: int = 1000
    checkpoint_every: float = 0
    log_every: int = 50
    dtype: str = "float32"
    #: ``precision == "bf16"``, derived (not an argument: ``dataclasses.replace`` cannot carry a stale value over);
    #: kept because the result keys of fp32 and bf16 runs name it.  ``amp_bf16 = true`` in a config file or dict
    #: (:func:`config_from_dict`, :meth:`RunConfig.from_identity`) is read as ``precision = "bf16"``.
    amp_bf16: bool = dataclasses.field(default=False, init=False)
    sync_batchnorm: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", _check_positive_int(self.batch_size, "train.batch_size"))
        check_choice(self.unit, "train.unit", UNITS)
        check_choice(self.dtype, "train.dtype", DTYPES)
        check_choice(self.precision, "train.precision", PRECISIONS)
        for name in ("cosine", "sync_batchnorm", "channels_last", "compile"):
            check_bool(getattr(self, name), f"train.{name}")
        object.__setattr__(self, "amp_bf16", self.precision == "bf16")  # the legacy field, derived (keys)
        if self.precision != "fp32" and self.dtype != "float32":
            raise ValueError(
                f"train.precision = {self.precision!r} needs train.dtype = 'float32' (autocast keeps float32 master "
                f"weights), got train.dtype = {self.dtype!r}"
            )
        object.__setattr__(self, "length", _check_duration(self.length, "train.length"))
        milestones = _check_milestones(self.milestones)
        if list(milestones) != sorted(set(milestones)) or any(m > self.length for m in milestones):
            raise ValueError(
                f"train.milestones must increase strictly within (0, length={self.length}], got {milestones}"
            )
        object.__setattr__(self, "milestones", milestones)
        check_real(self.lr_decay, "train.lr_decay", low=0.0, high=1.0, low_open=True)
        object.__setattr__(self, "warmup", _check_duration(self.warmup, "train.warmup", allow_zero=True))
        if self.warmup > self.length:
            raise ValueError(f"train.warmup must lie in [0, length={self.length}], got {self.warmup!r}")
        if self.cosine and milestones:
            raise ValueError("train.cosine and train.milestones exclude each other")
        object.__setattr__(self, "eval_every", _check_duration(self.eval_every, "train.eval_every"))
        object.__setattr__(
            self, "checkpoint_every", _check_duration(self.checkpoint_every, "train.checkpoint_every", allow_zero=True)
        )
        for name in ("eval_train_samples", "eval_test_samples"):
            check_int(getattr(self, name), f"train.{name}", minimum=0, note="0: all examples")
        _check_positive_int(self.eval_batch_size, "train.eval_batch_size")
        _check_positive_int(self.log_every, "train.log_every")

    def steps_per_unit(self, train_size: int) -> int:
        """Optimizer steps per unit: 1 for ``"step"``, else the full batches per epoch (last partial dropped)."""
        if self.batch_size > train_size:
            raise ValueError(f"train.batch_size={self.batch_size} exceeds the {train_size} training examples")
        return 1 if self.unit == "step" else train_size // self.batch_size

    def to_steps(self, value: float, train_size: int, name: str) -> int:
        steps = round(value * self.steps_per_unit(train_size))
        if value > 0 and steps < 1:
            raise ValueError(f"train.{name}={value} {self.unit}s is less than one step")
        return steps


@dataclass(frozen=True)
class SvagConfig:
    """SVAG factor ``ell`` (integer >= 1; 1 is a plain run) and how momentum scales with it."""

    ell: int = 1
    momentum_scaling: str = "fixed"

    def __post_init__(self) -> None:
        check_svag_factor(self.ell)
        ell = check_int(self.ell, "svag.ell", minimum=1, note="step counts scale by ell")
        object.__setattr__(self, "ell", ell)
        check_choice(self.momentum_scaling, "svag.momentum_scaling", MOMENTUM_SCALINGS)


@dataclass(frozen=True)
class RunConfig:
    """One experiment: data, model, optimizer, schedule, SVAG, seed and device (and optionally a grid)."""

    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    train: TrainConfig
    svag: SvagConfig = field(default_factory=SvagConfig)
    seed: int = 0
    device: str = "cpu"
    name: str = "run"
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    vectorize: bool = False

    def __post_init__(self) -> None:
        check_int(self.seed, "seed", minimum=0)
        check_string(self.name, "name")
        check_bool(self.vectorize, "grid.vectorize")
        device = check_string(self.device, "device")
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        is_text = self.data.name in TEXT_DATASETS
        if is_text != (self.model.name in TEXT_MODELS):
            raise ValueError(
                f"model {self.model.name!r} does not fit dataset {self.data.name!r}: the text datasets "
                f"{sorted(TEXT_DATASETS)} need one of the models {sorted(TEXT_MODELS)}, and only they do"
            )

    def identity(self) -> dict[str, Any]:
        """The JSON-able dict that keys this run's results (everything but ``name``).

        Fields added after results were stored leave the keys of the runs that do not use them unchanged:
        ``data.train_subset`` appears only when set; ``train.precision`` only for ``"fp16"`` (fp32 and bf16 are
        keyed, as before it existed, by ``train.amp_bf16`` = false / true); ``train.channels_last`` and
        ``train.compile`` never (kernels, not the computed function), so a compiled run resumes uncompiled.
        """
        document = dataclasses.asdict(self)
        del document["name"]
        train = document["train"]
        del train["channels_last"], train["compile"]
        if train["precision"] != "fp16":
            del train["precision"]
        if not self.data.train_subset:
            del document["data"]["train_subset"]  # so runs on the whole training set keep their keys
        if not self.train.sync_batchnorm:
            del document["train"]["sync_batchnorm"]  # likewise: runs with per-device BatchNorm keep their keys
        if not self.grid:
            del document["grid"], document["vectorize"]
        else:
            document["grid"] = [[path, list(values)] for path, values in self.grid]
        return document

    @classmethod
    def from_identity(cls, document: Mapping[str, Any], name: str = "run") -> RunConfig:
        """Rebuild a config from :meth:`identity` (as stored in records and checkpoints)."""
        train = _read_amp_bf16(dict(document["train"]))
        if isinstance(train.get("milestones"), list):
            train["milestones"] = tuple(train["milestones"])
        return cls(
            data=DataConfig(**document["data"]),
            model=ModelConfig(**document["model"]),
            optimizer=OptimizerConfig(**document["optimizer"]),
            train=TrainConfig(**train),
            svag=SvagConfig(**document["svag"]),
            seed=document["seed"],
            device=document["device"],
            name=name,
            grid=tuple((path, tuple(values)) for path, values in document.get("grid", ())),
            vectorize=document.get("vectorize", False),
        )

    def schedule(self, train_size: int) -> TrainSchedule:
        r"""The optimizer schedule in steps (effective learning rate), SVAG applied (``svag_schedule``)."""
        train = self.train
        base = TrainSchedule(
            lr=self.optimizer.effective_lr,
            steps=train.to_steps(train.length, train_size, "length"),
            momentum=self.optimizer.momentum,
            milestones=tuple(train.to_steps(m, train_size, "milestones") for m in train.milestones),
            lr_decay=train.lr_decay,
            warmup_steps=train.to_steps(train.warmup, train_size, "warmup"),
            cosine=train.cosine,
        )
        if self.svag.ell == 1:
            return base
        return svag_schedule(base, self.svag.ell, self.svag.momentum_scaling)  # type: ignore[arg-type]


_SECTIONS = {"data", "model", "optimizer", "train", "svag", "grid"}
_TOP_LEVEL = {"name", "seed", "device"}


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _section(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, Mapping):
        raise ParameterTypeError(f"[{name}] must be a table, got {describe(value)}")
    return dict(value)


def _read_amp_bf16(values: dict[str, Any], strict: bool = False) -> dict[str, Any]:
    """A ``[train]`` table with the old spelling ``amp_bf16`` read as ``precision`` (``amp_bf16`` is derived).

    ``strict`` (a config file or dict): ``amp_bf16 = true`` next to another precision is an error.  A stored
    identity (records, checkpoints) names ``amp_bf16`` and ``precision`` only for fp16, so there the explicit
    ``precision`` wins.
    """
    if "amp_bf16" not in values:
        return values
    values = dict(values)
    amp_bf16 = check_bool(values.pop("amp_bf16"), "train.amp_bf16")
    if amp_bf16 and values.get("precision", "bf16") != "bf16":
        if strict:
            raise ValueError(
                f"train.amp_bf16 = true (the old spelling of precision = 'bf16') contradicts "
                f"train.precision = {values['precision']!r}: drop amp_bf16"
            )
        return values
    if amp_bf16:
        values["precision"] = "bf16"
    return values


def _build(cls: type, name: str, values: dict[str, Any]) -> Any:
    allowed = _fields(cls)
    unknown = sorted(str(key) for key in set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{name}]; allowed: {allowed}")
    if name == "train" and "milestones" in values:
        values["milestones"] = _check_milestones(values["milestones"])
    if name == "train":
        values = _read_amp_bf16(values, strict=True)
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        raise ValueError(f"[{name}] needs the keys {required}: {exc}") from exc


def config_from_dict(document: Mapping[str, Any]) -> RunConfig:
    """Validate a parsed config (the TOML tables as a dict) and build the :class:`RunConfig`.

    Every key is checked for its type and range (booleans are not numbers, strings are not lists) and every
    model and data option against its builder's schema; ``ValueError`` names the key.
    """
    if not isinstance(document, Mapping):
        raise ParameterTypeError(f"a config must be a table (a mapping), got {describe(document)}")
    unknown = sorted(str(key) for key in set(document) - _SECTIONS - _TOP_LEVEL)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the config; allowed: {sorted(_TOP_LEVEL | _SECTIONS)}")
    for required in ("data", "model", "optimizer", "train"):
        if required not in document:
            raise ValueError(f"the config needs a [{required}] table")
    data = _section(document, "data")
    model = _section(document, "model")
    if "name" not in data or "name" not in model:
        raise ValueError("[data] and [model] each need a `name`")
    grid = _section(document, "grid")
    vectorize = check_bool(grid.pop("vectorize", False), "grid.vectorize")
    grid_items = []
    for path, values in grid.items():
        if path not in _GRID_PATHS:
            raise ValueError(f"unknown grid key {path!r}; allowed: {sorted(_GRID_PATHS)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid.{path} must be a non-empty list, got {values!r}")
        grid_items.append((path, tuple(values)))
    config = RunConfig(
        data=DataConfig(
            name=data.pop("name"),
            few_shot_k=data.pop("few_shot_k", 0),
            train_subset=data.pop("train_subset", 0),
            options=data,
        ),
        model=ModelConfig(name=model.pop("name"), options=model),
        optimizer=_build(OptimizerConfig, "optimizer", _section(document, "optimizer")),
        train=_build(TrainConfig, "train", _section(document, "train")),
        svag=_build(SvagConfig, "svag", _section(document, "svag")),
        seed=document.get("seed", 0),
        device=document.get("device", "cpu"),
        name=document.get("name", "run"),
        grid=tuple(grid_items),
        vectorize=vectorize,
    )
    expand_grid(config)  # validate every member now, not halfway through a sweep
    return config


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config file (see the module docstring for its sections)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"config file {path} is a directory, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, "rb") as handle:  # an unreadable file raises OSError naming the path
        try:
            document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:  # a binary file: tomllib decodes the bytes as UTF-8 first
            raise ValueError(f"{path} is not a TOML file: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return config_from_dict(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


_GRID_PATHS = {
    "seed",
    *(f"optimizer.{name}" for name in _fields(OptimizerConfig)),
    *(f"train.{name}" for name in ("batch_size", "length", "lr_decay", "warmup", "precision")),
    "svag.ell",
    "svag.momentum_scaling",
}


def _replace_path(config: RunConfig, path: str, value: Any) -> RunConfig:
    section, _, key = path.partition(".")
    if not key:
        return dataclasses.replace(config, **{section: value})
    changes = {key: value}
    if path in ("optimizer.eta", "optimizer.lr"):  # the grid's rate replaces the base rate, whichever kind it was
        changes["lr" if key == "eta" else "eta"] = None
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


def expand_grid(config: RunConfig) -> list[RunConfig]:
    """The member runs of a config with a ``[grid]`` (the Cartesian product, in file order); else ``[config]``.

    Members carry no grid, so each one has the result key of the same run configured on its own.
    """
    if not config.grid:
        return [config]
    paths = [path for path, _ in config.grid]
    members = []
    base = dataclasses.replace(config, grid=(), vectorize=False)
    for values in itertools.product(*(values for _, values in config.grid)):
        member = base
        for path, value in zip(paths, values, strict=True):
            member = _replace_path(member, path, value)
        label = ",".join(f"{p}={v}" for p, v in zip(paths, values, strict=True))
        members.append(dataclasses.replace(member, name=f"{config.name}[{label}]"))
    return members
