"""PyTorch side of marginal-momentum: optimizers, SVAG, data, models, training runs, records and diagnostics.

May import :mod:`theory`; nothing in :mod:`theory` imports this package.  The training stack
(:mod:`empirical.data`, :mod:`empirical.models`, :mod:`empirical.config`, :mod:`empirical.train`,
:mod:`empirical.ensemble`, :mod:`empirical.records`, :mod:`empirical.checkpoints`, :mod:`empirical.diagnostics`,
:mod:`empirical.sweep`)
is imported here so that its public names are available as ``empirical.NAME``.
"""

from empirical.checkpoints import CorruptCheckpointError, read_checkpoint, write_checkpoint
from empirical.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    SvagConfig,
    TrainConfig,
    config_from_dict,
    expand_grid,
    load_config,
)
from empirical.data import (
    DATASETS,
    DataNotFoundError,
    Dataset,
    EpochSampler,
    TensorSplit,
    TextSplit,
    derive_seed,
    load_dataset,
    random_crop_flip,
)
from empirical.diagnostics import (
    CurvatureNoiseSplit,
    FlatLoss,
    curvature_noise_split,
    diagnose_checkpoint,
    gradient_noise,
    sharpness,
)
from empirical.ensemble import train_ensemble
from empirical.models import (
    MODELS,
    SequenceClassifier,
    TopLayersClassifier,
    build_model,
    encode_frozen_layers,
    resnet32,
    resnet50,
)
from empirical.optim import NormalizedSGDM, check_weight_decay
from empirical.records import CorruptRecordError, Record, ResultStore, config_key
from empirical.svag import TrainSchedule, svag_combine, svag_loss, svag_schedule
from empirical.sweep import (
    EXECUTORS,
    MissingDependencyError,
    SweepJob,
    SweepOutcome,
    SweepPlan,
    SweepSubmission,
    local_parameters,
    make_executor,
    plan_sweep,
    slurm_parameters,
    submit_sweep,
    wait_sweep,
)
from empirical.train import RunResult, load_run_model, resolve_device, run_experiment, train_members, train_run

__all__ = [
    "DATASETS",
    "EXECUTORS",
    "MODELS",
    "CorruptCheckpointError",
    "CorruptRecordError",
    "CurvatureNoiseSplit",
    "DataConfig",
    "DataNotFoundError",
    "Dataset",
    "EpochSampler",
    "FlatLoss",
    "MissingDependencyError",
    "ModelConfig",
    "NormalizedSGDM",
    "OptimizerConfig",
    "Record",
    "ResultStore",
    "RunConfig",
    "RunResult",
    "SequenceClassifier",
    "SvagConfig",
    "SweepJob",
    "SweepOutcome",
    "SweepPlan",
    "SweepSubmission",
    "TensorSplit",
    "TextSplit",
    "TopLayersClassifier",
    "TrainConfig",
    "TrainSchedule",
    "build_model",
    "check_weight_decay",
    "config_from_dict",
    "config_key",
    "curvature_noise_split",
    "derive_seed",
    "diagnose_checkpoint",
    "encode_frozen_layers",
    "expand_grid",
    "gradient_noise",
    "load_config",
    "load_dataset",
    "load_run_model",
    "local_parameters",
    "make_executor",
    "plan_sweep",
    "random_crop_flip",
    "read_checkpoint",
    "resnet32",
    "resnet50",
    "resolve_device",
    "run_experiment",
    "sharpness",
    "slurm_parameters",
    "submit_sweep",
    "svag_combine",
    "svag_loss",
    "svag_schedule",
    "train_ensemble",
    "train_members",
    "train_run",
    "wait_sweep",
    "write_checkpoint",
]
