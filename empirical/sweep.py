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
time limit or preempts is requeued by submitit (:meth:`SweepJob.checkpoint`) and resumes the same way.  Each run
is trained holding its entry's lock (:meth:`empirical.records.ResultStore.lock`), so two jobs never train one run
twice: a second one waits, then reuses the first one's record.
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
    "JobFailure",
    "MissingDependencyError",
    "SweepJob",
    "SweepOutcome",
    "SweepPlan",
    "SweepSubmission",
    "local_parameters",
    "make_executor",
    "plan_sweep",
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


class MissingDependencyError(ImportError):
    """submitit is not installed (``mvm`` exits 2 with :data:`CLUSTER_INSTALL_HINT`)."""


@dataclass(frozen=True)
class SweepJob:
    """The callable one submitit job runs: train ``members`` (resuming) into the run store ``out``.

    ``vectorize``, ``discard_corrupt`` and ``final_checkpoints`` are passed to :func:`empirical.train_members`.
    Returns the members' :class:`empirical.RunResult`\\ s.  Being a plain picklable object with a
    :meth:`checkpoint` method, it is requeued by submitit on a Slurm timeout or preemption.
    """

    members: tuple[RunConfig, ...]
    out: str
    vectorize: bool = True
    discard_corrupt: bool = False
    final_checkpoints: bool = True
    quiet: bool = False

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]

    def __call__(self) -> list[RunResult]:
        import empirical

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
        for result in results:
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

    ``gpus_per_job`` -> ``--gpus-per-node``, ``cpus_per_job`` -> ``--cpus-per-task``, ``time_min`` -> ``--time``
    (minutes), ``mem_gb`` -> ``--mem`` (``NGB``), ``array_parallelism`` -> the ``%N`` of ``--array``; unset ones
    are left to the cluster's defaults (submitit's for the time limit).  One task per job.
    """
    _check_positive("--gpus-per-job", gpus_per_job, allow_zero=True)
    _check_positive("--cpus-per-job", cpus_per_job)
    _check_positive("--time", time_min)
    _check_positive("--mem", mem_gb)
    _check_positive("--array-parallelism", array_parallelism)
    parameters: dict[str, Any] = {"job_name": job_name, "nodes": 1, "ntasks_per_node": 1}
    if partition is not None:
        if not partition or any(c.isspace() for c in partition):
            raise ValueError(f"--partition must be a non-empty name without spaces, got {partition!r}")
        parameters["partition"] = partition
    if gpus_per_job is not None:
        parameters["gpus_per_node"] = gpus_per_job
    if cpus_per_job is not None:
        parameters["cpus_per_task"] = cpus_per_job
    if time_min is not None:
        parameters["time"] = time_min
    if mem_gb is not None:
        parameters["mem"] = f"{mem_gb:g}GB"
    if array_parallelism is not None:
        parameters["array_parallelism"] = array_parallelism
    return parameters


def local_parameters(
    *, gpus_per_job: int | None = None, time_min: int | None = None, devices: Sequence[str] = ()
) -> dict[str, Any]:
    """Parameters of :class:`submitit.LocalExecutor`: ``timeout_min`` (default a week, not submitit's 2 minutes)
    and ``gpus_per_node``, the GPUs a job sees (``CUDA_VISIBLE_DEVICES=0,...,N-1``; 0 hides every GPU).

    Without ``gpus_per_job``, a job sees the GPUs its runs' ``devices`` name: ``cuda`` or ``cuda:0`` needs one,
    ``cuda:3`` four; CPU runs see none.
    """
    _check_positive("--gpus-per-job", gpus_per_job, allow_zero=True)
    _check_positive("--time", time_min)
    if gpus_per_job is None:
        gpus_per_job = 0
        for device in devices:
            if device.startswith("cuda"):
                index = device.partition(":")[2]
                gpus_per_job = max(gpus_per_job, int(index) + 1 if index.isdigit() else 1)
    return {"timeout_min": LOCAL_DEFAULT_TIME_MIN if time_min is None else time_min, "gpus_per_node": gpus_per_job}


def _check_positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


def make_executor(kind: str, folder: str | Path, parameters: dict[str, Any]) -> Any:
    """A :class:`submitit.LocalExecutor` (``kind="local"``) or :class:`submitit.SlurmExecutor` (``"slurm"``)
    writing its submission files and logs (``JOBID_0_log.out``, ``JOBID_0_log.err``) in ``folder``."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {kind!r}")
    try:
        import submitit
    except ImportError as exc:
        raise MissingDependencyError(f"submitit is not installed: {CLUSTER_INSTALL_HINT}") from exc
    executor = submitit.LocalExecutor(folder) if kind == "local" else submitit.SlurmExecutor(folder)
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

    Finished members are not submitted.  Jobs go in one batch (a Slurm job array).
    """
    plan = plan_sweep(members, out, vectorize=vectorize, discard_corrupt=discard_corrupt)
    calls = [SweepJob(group, str(out), vectorize, discard_corrupt, final_checkpoints, quiet) for group in plan.groups]
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
                outcome: list[RunResult] | JobFailure = job.result()
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
