"""Cluster sweeps: the members of an experiment's grid as batch jobs (``mvm sweep``, ``mvm figures --executor``).

Why submitit: it pickles a Python callable, submits it to Slurm (``sbatch`` job arrays) or runs it as a local
subprocess (:class:`submitit.LocalExecutor`), and handles logs, results, and requeue on timeout or preemption.
There is no scheduler here.  submitit is an optional dependency (``pip install 'marginal-momentum[cluster]'``),
imported only inside the functions that need it: without it, :func:`make_executor` raises
:class:`MissingDependencyError`.

One job trains one *group* of the grid's unfinished members with the same entry point as ``mvm train``
(:func:`empirical.train_members`, ``resume=True``) into the shared run store ``out``.  When the config sets
``vectorize = true`` a group is one vectorisable ensemble (:func:`empirical.ensemble.vectorizable_groups`, what
``mvm train`` would train together), so a job computes exactly what ``mvm train`` computes; otherwise every member
is a job of its own.  Records are keyed by run config (:mod:`empirical.records`), so a record is the same whether
``mvm train``, a local job or a Slurm job wrote it.

Resumption: members with a finished record (completed or diverged) are never submitted.  An unfinished member
resumes from its checkpoint (written every ``train.checkpoint_every``; resuming continues bit for bit), so
submitting a killed sweep again redoes only the steps since the last checkpoint.  A job that Slurm stops at its
time limit or preempts is requeued by submitit (:meth:`SweepJob.checkpoint`) and resumes the same way; a Slurm
sweep must give ``--time`` (submitit's default limit is 5 minutes) and is requeued up to
:data:`SLURM_MAX_REQUEUES` times on timeouts (each requeue continues from the last checkpoint).  Each run
is trained holding its entry's lock (:meth:`empirical.records.ResultStore.lock`), so two jobs never train one run
twice: a second one waits, then reuses the first one's record.

Several GPUs per job (``--gpus-per-job N``, ``N > 1``): the job runs ``N`` tasks, one per GPU, and each task sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` from Slurm's environment
(:func:`empirical.distributed.export_slurm_environment`, submitit's ``TorchDistributedEnvironment``) and trains
through the same :func:`empirical.distributed.session` as ``torchrun``: the members train data-parallel, one
after the other (a vectorised ensemble is not data-parallel), each rank on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empirical.config import RunConfig
from empirical.records import CorruptRecordError, ResultStore

if TYPE_CHECKING:
    from empirical.run import RunResult

__all__ = [
    "CLUSTER_INSTALL_HINT",
    "EXECUTORS",
    "SLURM_MAX_REQUEUES",
    "JobFailure",
    "MissingDependencyError",
    "SweepJob",
    "SweepOutcome",
    "SweepPlan",
    "SweepSubmission",
    "local_parameters",
    "make_executor",
    "plan_sweep",
    "slurm_mem",
    "slurm_parameters",
    "submit_sweep",
    "wait_sweep",
]

EXECUTORS = ("local", "slurm")
CLUSTER_INSTALL_HINT = "pip install 'marginal-momentum[cluster]'"
#: Run statuses of a finished record: such members are never submitted.
FINISHED_STATUSES = ("completed", "diverged")
#: ``timeout_min`` of a local job when ``--time`` is not given (submitit's own default is 2 minutes).
LOCAL_DEFAULT_TIME_MIN = 7 * 24 * 60
#: Requeues of a Slurm job on timeouts (submitit's default is 3): each continues from the runs' last checkpoint.
SLURM_MAX_REQUEUES = 1000


class MissingDependencyError(ImportError):
    """submitit is not installed (``mvm`` exits 2 with :data:`CLUSTER_INSTALL_HINT`)."""


@dataclass(frozen=True)
class SweepJob:
    """The callable one submitit job runs: train ``members`` (resuming) into the run store ``out``.

    ``vectorize``, ``discard_corrupt`` and ``final_checkpoints`` are passed to :func:`empirical.train_members`.
    With ``tasks > 1`` the job is one of ``tasks`` submitit tasks (one per GPU) that train data-parallel: it
    exports the torch.distributed variables from the job's environment and trains inside
    :func:`empirical.distributed.session` (collectives wait ``dist_timeout_min`` minutes at most).
    Returns the members' :class:`empirical.RunResult`\\ s.  Being a plain picklable object with a
    :meth:`checkpoint` method, it is requeued by submitit on a Slurm timeout or preemption.
    """

    members: tuple[RunConfig, ...]
    out: str
    vectorize: bool = True
    discard_corrupt: bool = False
    final_checkpoints: bool = True
    quiet: bool = False
    tasks: int = 1
    dist_timeout_min: float | None = None

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]

    def __call__(self) -> list[RunResult]:
        if self.tasks <= 1:
            return self._train()
        from empirical import distributed

        distributed.export_slurm_environment()
        device = self.members[0].device if self.members else "cpu"
        with distributed.session(device, timeout_min=self.dist_timeout_min):
            return self._train()

    def _train(self) -> list[RunResult]:
        import empirical
        from empirical import distributed

        talk = distributed.rank() == 0
        if talk:
            print(f"sweep job: {len(self.members)} run(s) into {self.out}: {', '.join(self.names)}", flush=True)
        results = empirical.train_members(
            self.members,
            resume=True,
            out=self.out,
            quiet=self.quiet,
            vectorize=self.vectorize,
            discard_corrupt=self.discard_corrupt,
            final_checkpoints=self.final_checkpoints,
        )
        for result in results if talk else ():
            print(f"sweep job: {result.name}: {result.status} -> {result.path}", flush=True)
        return results

    def checkpoint(self) -> Any:
        """Requeue the same job on a timeout or preemption: it resumes from the runs' checkpoints."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep does: members already ``finished`` in the store, and the groups of the others (one per job)."""

    finished: tuple[RunConfig, ...]
    groups: tuple[tuple[RunConfig, ...], ...]

    @property
    def submitted(self) -> int:
        """Number of members that go into jobs."""
        return sum(len(group) for group in self.groups)


def _finished(store: ResultStore, member: RunConfig, discard_corrupt: bool) -> bool:
    try:
        record = store.load(member.identity())
    except CorruptRecordError:
        if not discard_corrupt:
            raise
        return False  # the job discards it (said on stderr) and trains it again
    return record is not None and record.status in FINISHED_STATUSES


def plan_sweep(
    members: Sequence[RunConfig], out: str | Path, *, vectorize: bool = True, discard_corrupt: bool = False
) -> SweepPlan:
    """Split ``members`` into those finished in the store ``out`` and the job groups of the others.

    With ``vectorize`` the unfinished members are grouped as :func:`empirical.train_members` would train them
    together (one vectorisable ensemble per job); otherwise one member per job.  A damaged record raises
    :class:`empirical.records.CorruptRecordError` unless ``discard_corrupt`` (then it counts as unfinished).
    Duplicate configs (same store key) are submitted once.
    """
    store = ResultStore(out)
    finished, pending, seen = [], [], set()
    for member in members:
        key = store.key(member.identity())
        if key in seen:
            continue
        seen.add(key)
        (finished if _finished(store, member, discard_corrupt) else pending).append(member)
    if vectorize:
        from empirical.ensemble import vectorizable_groups

        groups = [tuple(pending[i] for i in group) for group in vectorizable_groups(pending)]
    else:
        groups = [(member,) for member in pending]
    return SweepPlan(tuple(finished), tuple(groups))


def slurm_mem(mem_gb: float) -> str:
    """``--mem`` as sbatch takes it, by submitit's rule: ``NGB`` for whole gigabytes, else integer ``NMB``."""
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def slurm_parameters(
    *,
    partition: str | None = None,
    gpus_per_job: int | None = None,
    cpus_per_job: int | None = None,
    time_min: int | None = None,
    mem_gb: float | None = None,
    array_parallelism: int | None = None,
    job_name: str = "mvm-sweep",
) -> dict[str, Any]:
    """Parameters of :class:`submitit.SlurmExecutor` (its own names) for one job per group.

    ``time_min`` -> ``--time`` (minutes) is required: submitit's default is 5 minutes, and a job is requeued at
    most :data:`SLURM_MAX_REQUEUES` times past it.  ``gpus_per_job`` -> ``--gpus-per-node`` and, for ``N > 1``,
    ``--ntasks-per-node=N`` (one data-parallel task per GPU); ``cpus_per_job`` -> ``--cpus-per-task`` (divided
    among the ``N`` tasks); ``mem_gb`` -> ``--mem`` (:func:`slurm_mem`), ``array_parallelism`` -> the ``%N`` of
    ``--array``; the others are left to the cluster's defaults.
    """
    _check_positive("--gpus-per-job", gpus_per_job, allow_zero=True)
    _check_positive("--cpus-per-job", cpus_per_job)
    _check_positive("--time", time_min)
    _check_positive("--mem", mem_gb)
    _check_positive("--array-parallelism", array_parallelism)
    if time_min is None:
        raise ValueError(
            "--time MINUTES is required with --executor slurm (submitit's default limit is 5 minutes); a job that "
            "reaches it is requeued and resumes from its checkpoint"
        )
    tasks = gpus_per_job if gpus_per_job is not None and gpus_per_job > 1 else 1
    parameters: dict[str, Any] = {"job_name": job_name, "nodes": 1, "ntasks_per_node": tasks}
    if partition is not None:
        if not partition or any(c.isspace() for c in partition):
            raise ValueError(f"--partition must be a non-empty name without spaces, got {partition!r}")
        parameters["partition"] = partition
    if gpus_per_job is not None:
        parameters["gpus_per_node"] = gpus_per_job
    if cpus_per_job is not None:
        if cpus_per_job < tasks:
            raise ValueError(f"--cpus-per-job {cpus_per_job} is fewer than the {tasks} tasks (one per GPU) of a job")
        parameters["cpus_per_task"] = cpus_per_job // tasks
    parameters["time"] = time_min
    if mem_gb is not None:
        parameters["mem"] = slurm_mem(mem_gb)
    if array_parallelism is not None:
        parameters["array_parallelism"] = array_parallelism
    return parameters


def local_parameters(
    *, gpus_per_job: int | None = None, time_min: int | None = None, devices: Sequence[str] = ()
) -> dict[str, Any]:
    """Parameters of :class:`submitit.LocalExecutor`: ``timeout_min`` (default a week, not submitit's 2 minutes)
    and ``gpus_per_node``, the GPUs a job sees (``CUDA_VISIBLE_DEVICES=0,...,N-1``; 0 hides every GPU); with
    ``gpus_per_job > 1``, ``tasks_per_node`` is ``N`` (one data-parallel task per GPU, as on Slurm).

    Without ``gpus_per_job``, a job sees the GPUs its runs' ``devices`` name: ``cuda`` or ``cuda:0`` needs one,
    ``cuda:3`` four; CPU runs see none.
    """
    _check_positive("--gpus-per-job", gpus_per_job, allow_zero=True)
    _check_positive("--time", time_min)
    parameters: dict[str, Any] = {"timeout_min": LOCAL_DEFAULT_TIME_MIN if time_min is None else time_min}
    if gpus_per_job is None:
        gpus_per_job = 0
        for device in devices:
            if device.startswith("cuda"):
                index = device.partition(":")[2]
                gpus_per_job = max(gpus_per_job, int(index) + 1 if index.isdigit() else 1)
    elif gpus_per_job > 1:
        parameters["tasks_per_node"] = gpus_per_job
    parameters["gpus_per_node"] = gpus_per_job
    return parameters


def _check_positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


def make_executor(kind: str, folder: str | Path, parameters: dict[str, Any]) -> Any:
    """A :class:`submitit.LocalExecutor` (``kind="local"``) or :class:`submitit.SlurmExecutor` (``"slurm"``,
    requeued up to :data:`SLURM_MAX_REQUEUES` times on timeouts) writing its submission files and logs
    (``JOBID_0_log.out``, ``JOBID_0_log.err``) in ``folder``."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {kind!r}")
    try:
        import submitit
    except ImportError as exc:
        raise MissingDependencyError(f"submitit is not installed: {CLUSTER_INSTALL_HINT}") from exc
    if kind == "local":
        executor = submitit.LocalExecutor(folder)
    else:
        executor = submitit.SlurmExecutor(folder, max_num_timeout=SLURM_MAX_REQUEUES)
    executor.update_parameters(**parameters)
    return executor


@dataclass(frozen=True)
class SweepSubmission:
    """A submitted sweep: the plan and one ``(submitit job, SweepJob)`` pair per group."""

    plan: SweepPlan
    jobs: tuple[tuple[Any, SweepJob], ...]


def submit_sweep(
    members: Sequence[RunConfig],
    executor: Any,
    *,
    out: str | Path,
    vectorize: bool = True,
    discard_corrupt: bool = False,
    final_checkpoints: bool = True,
    quiet: bool = False,
) -> SweepSubmission:
    """Submit one job per unfinished group of ``members`` (see :func:`plan_sweep`) to ``executor``.

    Finished members are not submitted.  Jobs go in one batch (a Slurm job array).  An executor with several
    tasks per job (``tasks_per_node``/``ntasks_per_node`` > 1) gets data-parallel jobs (:class:`SweepJob`).
    """
    plan = plan_sweep(members, out, vectorize=vectorize, discard_corrupt=discard_corrupt)
    settings = getattr(executor, "parameters", {}) or {}
    tasks = int(settings.get("ntasks_per_node") or settings.get("tasks_per_node") or 1)
    calls = [
        SweepJob(group, str(out), vectorize, discard_corrupt, final_checkpoints, quiet, tasks) for group in plan.groups
    ]
    if not calls:
        return SweepSubmission(plan, ())
    Path(out).mkdir(parents=True, exist_ok=True)
    with executor.batch():
        jobs = [executor.submit(call) for call in calls]
    return SweepSubmission(plan, tuple(zip(jobs, calls, strict=True)))


@dataclass(frozen=True)
class JobFailure:
    """A job that raised or was killed: its id, runs, last line of the error and its log files."""

    job_id: str
    names: tuple[str, ...]
    error: str
    stdout: Path
    stderr: Path


@dataclass(frozen=True)
class SweepOutcome:
    """The finished jobs' results (in submission order) and the failed jobs."""

    results: list[RunResult] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)


def _error_line(exc: BaseException) -> str:
    """The job's own error: the last line of the trace submitit quotes between ``-----`` rules, else the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    if len(rules) >= 2 and rules[1] > rules[0] + 1:
        return lines[rules[1] - 1]
    return lines[-1] if lines else type(exc).__name__


def wait_sweep(
    submission: SweepSubmission,
    *,
    poll_s: float = 1.0,
    on_job: Callable[[Any, SweepJob, list[RunResult] | JobFailure], None] | None = None,
) -> SweepOutcome:
    """Wait for every job of ``submission``; ``on_job(job, call, results or failure)`` as each one ends."""
    results: dict[int, list[RunResult]] = {}
    failures: list[JobFailure] = []
    pending = dict(enumerate(submission.jobs))
    while pending:
        for index, (job, call) in list(pending.items()):
            if not job.done():
                continue
            del pending[index]
            try:
                outcome: list[RunResult] | JobFailure = job.results()[0]  # rank 0's for a multi-task job
                results[index] = outcome
            except Exception as exc:  # submitit's FailedJobError / UncompletedJobError: the job's error or fate
                outcome = JobFailure(
                    str(job.job_id), tuple(call.names), _error_line(exc), job.paths.stdout, job.paths.stderr
                )
                failures.append(outcome)
            if on_job is not None:
                on_job(job, call, outcome)
        if pending:
            time.sleep(poll_s)
    return SweepOutcome([r for index in sorted(results) for r in results[index]], failures)
