"""PyTorch side of marginal-momentum: optimizers, SVAG, data, models, training runs, records and diagnostics.

May import :mod:`theory`; nothing in :mod:`theory` imports this package.  The training stack is imported here so that
its public names are available as ``empirical.NAME``:

* :mod:`empirical.optim` (normalized SGDM, eq. (3)) and :mod:`empirical.svag` (SVAG loss, gradient, schedule);
* :mod:`empirical.data` (package: :mod:`~empirical.data.splits`, :mod:`~empirical.data.vision`,
  :mod:`~empirical.data.image_folder`, :mod:`~empirical.data.text`; the registry in its ``__init__``),
  :mod:`empirical.models` and :mod:`empirical.config`;
* :mod:`empirical.run` (what the loop and the ensemble share: data preparation, evaluation, metrics, the run
  store's entry protocol), :mod:`empirical.train` (the single-run loop), :mod:`empirical.ensemble` (vectorised
  runs), :mod:`empirical.experiment` (the grid driver choosing between them), :mod:`empirical.precision`
  (``train.precision``, ``channels_last``, ``compile`` for the loop);
* :mod:`empirical.records`, :mod:`empirical.checkpoints` (run store and checkpoints) and
  :mod:`empirical.diagnostics` (sharpness, gradient noise at a checkpoint);
* :mod:`empirical.sweep` (grid members as submitit jobs, local or Slurm).

Imports run one way: ``run`` <- ``train``, ``ensemble`` <- ``experiment``; ``diagnostics`` reads models through
``run`` only.
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
from empirical.experiment import run_experiment, train_members
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
from empirical.run import RunResult, load_run_model, resolve_device
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
from empirical.train import train_run

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
