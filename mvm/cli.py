"""``mvm``: argument parsing only; every subcommand calls one public function of the packages.

Subcommands exist only once they do real work:

* ``mvm derive TOPIC [--latex] [--order N] [--form FORM]`` prints derived formulas (topics in
  :data:`DERIVE_TOPICS`; the options a topic accepts are in :data:`DERIVE_TOPIC_OPTIONS`).
* ``mvm verify [--quick] [--json PATH] [--markdown PATH] [--only ID ...]`` runs the claim checks of
  :mod:`proofs_check`, prints the table and exits 1 when a claim fails; ``--mutants`` instead runs the deliberately
  wrong method sets (:data:`proofs_check.methods.MUTANTS`), prints the kill matrix and exits 1 when a mutant survives;
  ``--empirical [--quick] [--device D] [--cache DIR] [--data NAME=PATH]`` runs the real-network claims E1-E4 instead
  (:func:`proofs_check.real_networks.run_real_networks`).

Exit codes (DESIGN.md section 3): 0 success, 1 a claim failed (or a mutant survived, or a run did not complete),
2 usage or input error, 3 filesystem error (the message names the path).
* ``mvm train CONFIG [--device cpu|cuda] [--seed N] [--resume] [--recompute] [--out DIR] [--quiet]`` runs one
  experiment (:func:`empirical.experiment.run_experiment`); a damaged stored entry is exit 3 with a message naming its
  folder, and ``--recompute`` discards the config's entries and trains again.  ``--nproc N [--dist-backend B]
  [--dist-timeout MINUTES]`` trains data-parallel over N processes through ``torch.distributed.run``
  (:mod:`empirical.distributed`; collectives wait up to ``--dist-timeout`` minutes, default 120, while rank 0 works
  alone; a fixed ``cuda:N`` device is a usage error there, data-parallel runs name ``cuda``).  An error of rank 0
  is its one line on stderr and its exit code (torchrun's report of the failed workers is dropped; it is shown when
  torchrun fails for its own reasons).
* ``mvm figures [--quick] [--only ID ...] [--out DIR] [--device cpu|cuda] [--data NAME=PATH]`` builds the
  figures and tables (:func:`paper_figures.build_figures`): PNG, PDF and ``manifest.json``.  With
  ``--executor local|slurm`` (and the cluster options of ``mvm sweep``) it first trains the figures' runs
  (:func:`paper_figures.figure_run_members`) as submitit jobs into ``CACHE/runs`` and waits for them
  (``--no-wait``: submit and exit), then builds the figures from the filled store.
* ``mvm sweep CONFIG --executor local|slurm [--partition P --gpus-per-job N --cpus-per-job N --time MIN --mem GB
  --array-parallelism N] [--out DIR] [--device D] [--jobs-folder DIR] [--wait/--no-wait]`` trains the members of a
  config's grid as submitit jobs (:mod:`empirical.sweep`): finished members are skipped ("N finished, M
  submitted"), the others resume from their checkpoints.  ``--executor slurm`` requires ``--time`` (a job reaching
  it is requeued and resumes); ``--gpus-per-job N > 1`` runs N data-parallel tasks per job, one per GPU.  A job
  that fails (its error and log path printed) or a run that does not complete is exit 1; submitit not installed
  is exit 2 (an environment the command cannot run in, like ``mvm bounds`` without Hypothesis) with the line
  ``pip install 'marginal-momentum[cluster]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _derive_forms(latex: bool) -> str:
    from theory.forms import format_proofs

    return format_proofs(latex=latex)


def _derive_stationary(latex: bool) -> str:
    from theory.quadratic_symbolic import format_stationary

    return format_stationary(latex=latex)


def _derive_series(latex: bool, order: int = 3) -> str:
    from theory.quadratic_symbolic import format_series

    return format_series(latex=latex, order=order)


def _derive_stability(latex: bool) -> str:
    from theory.quadratic_symbolic import format_stability

    return format_stability(latex=latex)


def _derive_transition(latex: bool, form: str | None = None) -> str:
    from theory.quadratic_symbolic import format_transition

    return format_transition(latex=latex, form=form)


#: ``mvm derive`` topics: name -> (one-line help, function(latex, **options) -> text).
DERIVE_TOPICS: dict[str, tuple[str, Callable[..., str]]] = {
    "forms": ("parameterisations, effective learning rate, coupling identity (symbolic proofs)", _derive_forms),
    "stationary": ("exact stationary variances of SGD, SGDM, SMEs; eigenbasis pair formula", _derive_stationary),
    "series": ("series in eta of the stationary variances and their gaps (--order N)", _derive_series),
    "stability": ("characteristic polynomials and stability thresholds in eta*h (Jury)", _derive_stability),
    "transition": ("transition matrices of SGD, eq. (3), PyTorch, Polyak, Nesterov (--form F)", _derive_transition),
}
#: Options of ``mvm derive`` that a topic accepts (others reject them).
DERIVE_TOPIC_OPTIONS: dict[str, tuple[str, ...]] = {"series": ("order",), "transition": ("form",)}
#: Largest ``mvm derive series --order``: SymPy's series of the exact variances grows steeply with the order
#: (measured on 2 shared CPU cores, load average 3 to 8: order 1 4.4 s, 3 6.9 s, 6 35 s, 8 51 s, 10 341 s,
#: 15 unfinished after 6 minutes); beyond 8 the command would run for many minutes.
MAX_SERIES_ORDER = 8
#: Forms accepted by ``mvm derive transition --form`` (those of :func:`theory.quadratic.transition_matrix`).
TRANSITION_FORMS = ("sgd", "normalized", "pytorch", "polyak", "nesterov", "pytorch_nesterov")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvm",
        description="marginal-momentum: the theory of SGD with momentum at small learning rate, executable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    derive = commands.add_parser("derive", help="print derived formulas (plain text or LaTeX)")
    derive.add_argument(
        "topic",
        choices=sorted(DERIVE_TOPICS),
        help="; ".join(f"{name}: {text}" for name, (text, _) in sorted(DERIVE_TOPICS.items())),
    )
    derive.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    derive.add_argument(
        "--order", type=int, help=f"series: highest power of eta kept, 1 to {MAX_SERIES_ORDER} (default 3)"
    )
    derive.add_argument("--form", choices=TRANSITION_FORMS, help="transition: only this form (default all)")

    verify = commands.add_parser("verify", help="check the paper's claims: predicted vs measured, with verdicts")
    verify.add_argument("--quick", action="store_true", help="CI-sized checks (minutes on 2 CPU cores)")
    verify.add_argument("--json", metavar="PATH", help="write the results as a JSON list of ClaimResult dicts")
    verify.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    verify.add_argument("--only", nargs="+", metavar="ID", help="run only these claim ids")
    verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify.add_argument(
        "--mutants", nargs="*", metavar="NAME", help="run the mutants (all, or these) and print the kill matrix"
    )
    verify.add_argument("--jobs", type=int, help="--mutants: worker processes (default: the number of CPUs)")
    verify.add_argument(
        "--empirical",
        action="store_true",
        help="the real-network claims E1-E4 (training runs) instead of the theory claims; --quick: MNIST-1D on CPU",
    )
    verify.add_argument("--device", default="cpu", help="--empirical: device of the runs: cpu, cuda or cuda:N")
    verify.add_argument(
        "--cache", default="results/cache", help="--empirical: run store folder (default results/cache)"
    )
    verify.add_argument(
        "--data", action="append", default=[], metavar="NAME=PATH", help="--empirical full scale: local data paths"
    )

    figures = commands.add_parser(
        "figures", help="regenerate the paper's figures and tables (PNG, PDF, manifest.json) from cached results"
    )
    figures.add_argument("--quick", action="store_true", help="CPU scale from offline data (minutes on 2 cores)")
    figures.add_argument("--only", nargs="+", metavar="ID", help="build only these figure ids (see --list)")
    figures.add_argument("--out", default="results/figures", help="output folder (default: results/figures)")
    figures.add_argument("--cache", default="results/cache", help="cache of computed results (default: results/cache)")
    figures.add_argument("--device", default="cpu", help="device of the training runs: cpu, cuda or cuda:N")
    figures.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="local data or model path for paper scale, e.g. imagenet=/data/imagenet (repeatable)",
    )
    figures.add_argument("--recompute", action="store_true", help="ignore cached figure data (runs are still reused)")
    figures.add_argument("--gallery", metavar="DIR", help="also write small PNG copies there (the README gallery)")
    figures.add_argument("--list", action="store_true", help="list the figure ids and exit")
    figures.add_argument("--no-progress", action="store_true", help="no progress output")
    _add_cluster_options(figures, required=False)

    train = commands.add_parser("train", help="run one training experiment from a TOML config file")
    train.add_argument("config", help="path of the experiment's TOML file (see configs/)")
    train.add_argument("--device", help="override the config's device: cpu, cuda or cuda:N")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    train.add_argument(
        "--recompute", action="store_true", help="discard this config's stored entries (even damaged ones) and retrain"
    )
    train.add_argument("--out", default="runs", help="results folder (default: runs)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--nproc",
        type=int,
        help="data-parallel over N processes: relaunches through torch.distributed.run (each rank one shard of "
        "every global batch; on cuda, one GPU per rank); the command also runs as is under torchrun",
    )
    train.add_argument(
        "--dist-backend", choices=("gloo", "nccl"), help="process-group backend (default: nccl on cuda, else gloo)"
    )
    train.add_argument(
        "--dist-timeout",
        type=float,
        metavar="MINUTES",
        help="data-parallel: how long a rank waits in a collective while rank 0 works alone (waits for the store "
        "lock, scans data, evaluates) before the process group aborts (default: 120)",
    )

    sweep = commands.add_parser(
        "sweep", help="train a config's grid as cluster jobs (submitit: local subprocesses or Slurm), resumable"
    )
    sweep.add_argument("config", help="path of the experiment's TOML file (see configs/)")
    sweep.add_argument("--out", default="runs", help="results folder shared by the jobs (default: runs)")
    sweep.add_argument("--device", help="override the config's device: cpu, cuda or cuda:N")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars in the job logs")
    _add_cluster_options(sweep, required=True)

    bounds = commands.add_parser(
        "bounds", help="search the catalogue of inequalities for counterexamples against the exact theory (Hypothesis)"
    )
    bounds.add_argument("--only", nargs="+", metavar="ID", help="search only these bound ids (see --list)")
    bounds.add_argument("--budget", type=int, help="examples per bound (default: proofs_check.bounds.DEFAULT_BUDGET)")
    bounds.add_argument("--seed", type=int, default=0, help="seed of the search (default 0); same seed, same result")
    bounds.add_argument("--json", metavar="PATH", help="write the results as a JSON list of BoundResult dicts")
    bounds.add_argument("--list", action="store_true", help="list the bound ids with their statements and exit")
    bounds.add_argument("--no-progress", action="store_true", help="no per-bound progress lines on stderr")
    return parser


def _add_cluster_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """The submitit options shared by ``mvm sweep`` and ``mvm figures`` (:mod:`empirical.sweep`)."""
    parser.add_argument(
        "--executor",
        choices=("local", "slurm"),
        required=required,
        help="run the training jobs as local subprocesses or as Slurm jobs (submitit)"
        + ("" if required else "; default: train in this process"),
    )
    parser.add_argument("--partition", help="slurm: partition of the jobs")
    parser.add_argument(
        "--gpus-per-job",
        type=int,
        metavar="N",
        help="GPUs per job; N > 1: N data-parallel tasks, one per GPU (local: GPUs a job sees)",
    )
    parser.add_argument("--cpus-per-job", type=int, metavar="N", help="slurm: CPUs per job")
    parser.add_argument(
        "--time",
        type=int,
        metavar="MINUTES",
        help="time limit of a job (required for slurm: requeued and resumed past it)",
    )
    parser.add_argument("--mem", type=float, metavar="GB", help="slurm: memory per job in GB")
    parser.add_argument("--array-parallelism", type=int, metavar="N", help="slurm: most jobs of the array at once")
    parser.add_argument(
        "--jobs-folder", metavar="DIR", help="submitit's submission files and logs (default: RUNSTORE/.submitit)"
    )
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the jobs and report them (default), or print their ids and return at once",
    )


class FilesystemError(Exception):
    """An output path that cannot be written: exit code 3, the message names the path."""


def check_writable(path: str | None) -> None:
    """Raise :class:`FilesystemError` unless ``path`` can be written as a file (checked before any work)."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise FilesystemError(f"{target} is a directory, not a file")
    parent = target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FilesystemError(f"{existing} is not a directory (needed for {target})")
    if not os.access(existing, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise FilesystemError(f"{target} is not writable")


def check_writable_dir(path: str | None) -> None:
    """Raise :class:`FilesystemError` unless ``path`` is, or can be created as, a writable directory."""
    if not path:
        return
    target = Path(path)
    try:
        if target.exists() and not target.is_dir():
            raise FilesystemError(f"{target} exists and is not a directory")
        existing = target
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise FilesystemError(f"{existing} is not a directory (needed for {target})")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise FilesystemError(f"{existing} is not writable (needed for {target})")
    except OSError as exc:  # e.g. a parent that cannot be searched
        raise FilesystemError(_os_error_message(exc, target)) from exc


def _os_error_message(exc: OSError, fallback: str | os.PathLike[str] | None = None) -> str:
    """One line naming the path and the reason, e.g. ``out/fig.png: Permission denied``."""
    path = exc.filename if exc.filename is not None else fallback
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {reason}" if path is not None else reason


def _verify(args: argparse.Namespace) -> int:
    from proofs_check import format_kill_matrix, format_markdown, format_table, kill_matrix, run_all, select_claims
    from proofs_check.methods import MUTANTS
    from proofs_check.report import write_json, write_text

    try:
        if args.empirical and args.mutants is not None:
            raise ValueError("--empirical and --mutants do not combine: the real-network controls run in the tests")
        if args.mutants is not None:
            unknown = [name for name in args.mutants if name not in MUTANTS]
            if unknown:
                raise ValueError(f"unknown mutant(s) {unknown}; known: {sorted(MUTANTS)}")
        else:
            select_claims(args.only, "empirical" if args.empirical else "theory")
        data = _parse_data(args.data)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        for path in (args.json, args.markdown):
            check_writable(path)
        if args.empirical:
            check_writable_dir(args.cache)
    except ValueError as exc:  # unknown claim or mutant ids: the message lists the known ones
        print(f"mvm verify: {exc}", file=sys.stderr)
        return 2
    except FilesystemError as exc:
        print(f"mvm verify: error: {exc}", file=sys.stderr)
        return 3
    if args.mutants is not None:

        def report(name: str, ok: bool) -> None:
            if not args.no_progress:
                print(f"{name}: {'killed' if ok else 'SURVIVED'}", file=sys.stderr, flush=True)

        matrix = kill_matrix(quick=args.quick, names=args.mutants, jobs=args.jobs, on_mutant=report)
        print(format_kill_matrix(matrix))
        results = [r for rs in matrix.results.values() for r in rs]
        outcome = 0 if matrix.all_killed else 1
        markdown = format_kill_matrix(matrix, tablefmt="github")
    elif args.empirical:
        from proofs_check.real_networks import RealNetworkSetup, run_real_networks

        setup = RealNetworkSetup(
            scale="quick" if args.quick else "full",
            device=args.device,
            cache_dir=args.cache,
            data=data,
            progress=not args.no_progress,
        )
        results = run_real_networks(setup, only=args.only)
        print(format_table(results))
        outcome = 0 if all(r.passed for r in results) else 1
        markdown = format_markdown(results)
    else:
        results = run_all(quick=args.quick, only=args.only, progress=not args.no_progress)
        print(format_table(results))
        outcome = 0 if all(r.passed for r in results) else 1
        markdown = format_markdown(results)
    try:
        if args.json:
            write_json(results, args.json)
        if args.markdown:
            write_text(markdown, args.markdown)
    except OSError as exc:
        print(f"mvm verify: error: {_os_error_message(exc, args.json or args.markdown)}", file=sys.stderr)
        return 3
    return outcome


def _parse_data(pairs: Sequence[str]) -> dict[str, str]:
    data = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data takes NAME=PATH, got {pair!r}")
        data[name] = path
    return data


def _figures(args: argparse.Namespace) -> int:
    from paper_figures import available_figures, build_figures, get_figure

    if args.list:
        for figure_id in available_figures():
            spec = get_figure(figure_id)
            on_demand = "" if spec.default else " (on demand: --only)"
            print(f"{figure_id:24s} {spec.kind:9s} {spec.title}{on_demand}")
        return 0

    for path in (args.out, args.cache, args.gallery):  # before any figure is computed
        check_writable_dir(path)
    data = _parse_data(args.data)
    if args.executor is None:
        _reject_cluster_options(args, "--executor")
    else:
        from paper_figures import FigureContext, figure_run_members

        context = FigureContext(
            scale="quick" if args.quick else "full", device=args.device, cache_dir=Path(args.cache), data=data
        )
        listed = figure_run_members(args.only, context)
        executor = _executor(args, context.runs_dir, [m.device for _, members, _ in listed for m in members])
        submissions = [
            _submit(
                args,
                executor,
                members,
                out=context.runs_dir,
                label=f"{figure_id}: ",
                vectorize=True,
                discard_corrupt=True,
                final_checkpoints=final_checkpoints,
            )
            for figure_id, members, final_checkpoints in listed
        ]
        if not args.wait:
            print("figures not built yet: run the same command again once the jobs have finished")
            return 0
        outcome = _wait(submissions, incomplete_fails=False)  # a diverged run is data (a figure shows it)
        if outcome:
            print("figures not built: a training job failed", file=sys.stderr)
            return outcome

    def report(outcome) -> None:
        origin = "computed" if outcome.computed else "cached"
        files = ", ".join(path.name for path in outcome.files)
        print(f"{outcome.figure_id}: {origin}, {outcome.wall_time_s:.1f} s -> {files}", flush=True)
        for name, value in outcome.summary.items():
            print(f"    {name}: {value}", flush=True)

    build_figures(
        args.only,
        scale="quick" if args.quick else "full",
        out=args.out,
        cache_dir=args.cache,
        device=args.device,
        data=data,
        progress=not args.no_progress,
        recompute=args.recompute,
        gallery=args.gallery,
        on_figure=report,
    )
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from empirical import distributed
    from empirical.config import load_config
    from empirical.experiment import run_experiment

    if args.nproc is not None and args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    check_writable_dir(args.out)
    if args.nproc is not None and args.nproc > 1 and not distributed.launched():
        return _launch_train(args)
    device = args.device or load_config(args.config).device
    with distributed.session(device, args.dist_backend, args.dist_timeout):
        if args.nproc is not None and args.nproc != distributed.world_size():
            raise ValueError(f"--nproc {args.nproc} differs from the launcher's world size {distributed.world_size()}")
        results = run_experiment(
            args.config,
            device=args.device,
            seed=args.seed,
            resume=args.resume,
            out=args.out,
            quiet=args.quiet,
            recompute=args.recompute,
        )
        if distributed.rank() == 0:
            for result in results:
                print(_run_line(result))
    return 0 if all(r.status == "completed" for r in results) else 1


#: Cluster options that only ``--executor slurm`` uses.
_SLURM_ONLY = ("partition", "cpus_per_job", "mem", "array_parallelism")
_CLUSTER_OPTIONS = (*_SLURM_ONLY, "gpus_per_job", "time", "jobs_folder")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _reject_cluster_options(args: argparse.Namespace, needed: str) -> None:
    given = [_option(name) for name in _CLUSTER_OPTIONS if getattr(args, name) is not None]
    if not args.wait:
        given.append("--no-wait")
    if given:
        raise ValueError(f"{', '.join(given)} need(s) {needed}")


def _executor(args: argparse.Namespace, out: Path, devices: Sequence[str]):
    """The submitit executor of ``--executor`` and its options (usage errors before anything is submitted);
    local jobs see the GPUs ``devices`` (of the runs) name unless ``--gpus-per-job`` says otherwise."""
    from empirical import local_parameters, make_executor, slurm_parameters

    if args.executor == "local":
        given = [_option(name) for name in _SLURM_ONLY if getattr(args, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --executor slurm only")
        parameters = local_parameters(gpus_per_job=args.gpus_per_job, time_min=args.time, devices=devices)
    else:
        parameters = slurm_parameters(
            partition=args.partition,
            gpus_per_job=args.gpus_per_job,
            cpus_per_job=args.cpus_per_job,
            time_min=args.time,
            mem_gb=args.mem,
            array_parallelism=args.array_parallelism,
        )
    folder = Path(args.jobs_folder) if args.jobs_folder else Path(out) / ".submitit"
    check_writable_dir(str(folder))
    return make_executor(args.executor, folder, parameters)


def _submit(args: argparse.Namespace, executor, members, *, out: Path, label: str = "", **options):
    """Submit the unfinished members and say "N finished, M submitted" and the job ids and logs."""
    from empirical import submit_sweep

    submission = submit_sweep(members, executor, out=out, quiet=getattr(args, "quiet", False), **options)
    plan = submission.plan
    print(
        f"{label}{len(plan.finished)} finished, {plan.submitted} submitted in {len(submission.jobs)} job(s) "
        f"({args.executor}) -> {out}",
        flush=True,
    )
    for job, call in submission.jobs:
        print(f"  job {job.job_id}: {', '.join(call.names)} (log {job.paths.stdout})", flush=True)
    return submission


def _wait(submissions, incomplete_fails: bool = True) -> int:
    """Wait for every job and report each as it ends: 0, or 1 when a job failed or (``incomplete_fails``) a run
    did not complete."""
    from empirical import wait_sweep

    def report(job, call, outcome) -> None:
        if isinstance(outcome, list):
            print(f"job {job.job_id} done:", flush=True)
            for result in outcome:
                print("  " + _run_line(result), flush=True)
        else:
            print(
                f"job {job.job_id} FAILED ({', '.join(outcome.names)}): {outcome.error}; log {outcome.stderr}",
                file=sys.stderr,
                flush=True,
            )

    jobs = failed = incomplete = 0
    for submission in submissions:
        if not submission.jobs:
            continue
        outcome = wait_sweep(submission, on_job=report)
        jobs += len(submission.jobs)
        failed += len(outcome.failures)
        incomplete += sum(r.status != "completed" for r in outcome.results)
    if jobs:
        print(
            f"{jobs - failed} of {jobs} job(s) finished"
            + (f", {failed} failed" if failed else "")
            + (f", {incomplete} run(s) did not complete" if incomplete else ""),
            flush=True,
        )
    return 1 if failed or (incomplete and incomplete_fails) else 0


def _sweep(args: argparse.Namespace) -> int:
    import dataclasses

    from empirical import expand_grid, load_config

    check_writable_dir(args.out)
    config = load_config(args.config)
    if args.device is not None:
        config = dataclasses.replace(config, device=args.device)
    members = expand_grid(config)
    executor = _executor(args, Path(args.out), [m.device for m in members])
    submission = _submit(args, executor, members, out=Path(args.out), vectorize=config.vectorize)
    return _wait([submission]) if args.wait else 0


def _launch_train(args: argparse.Namespace) -> int:
    """``mvm train --nproc N``: check the batch sizes and devices, then run the same command under
    ``torch.distributed.run``; the exit code is rank 0's (written to a file named by
    :data:`empirical.distributed.EXIT_FILE_ENV`), and rank 0's error is the one line on stderr."""
    import tempfile

    from empirical import distributed
    from empirical.config import expand_grid, load_config

    for member in expand_grid(load_config(args.config)):
        distributed.check_batch_size(member.train.batch_size, args.nproc)
        distributed.check_device(args.device or member.device, args.nproc)
    if args.dist_timeout is not None and not args.dist_timeout > 0:
        raise ValueError(f"--dist-timeout must be a positive number of minutes, got {args.dist_timeout}")
    argv = ["train", args.config, "--out", args.out]  # no --nproc: torchrun's parser would take it for its own
    options = (
        ("--device", args.device),
        ("--seed", args.seed),
        ("--dist-backend", args.dist_backend),
        ("--dist-timeout", args.dist_timeout),
    )
    for flag, value in options:
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag in ("--resume", "--recompute", "--quiet") if getattr(args, flag[2:])]
    with tempfile.TemporaryDirectory(prefix="mvm-ddp-") as folder:
        exit_file = Path(folder) / "exit_code"
        # torchrun sets OMP_NUM_THREADS=1 when unset, with a warning on stderr: the same without the warning
        env = {"OMP_NUM_THREADS": "1", **os.environ, distributed.EXIT_FILE_ENV: str(exit_file)}
        code = _run_torchrun(distributed.launch_command(argv, args.nproc), env, exit_file)
        if code == 0:
            return 0
        rank0_code, _ = _read_exit_file(exit_file)
    return 1 if rank0_code is None else rank0_code


def _run_torchrun(command: list[str], env: dict[str, str], exit_file: Path) -> int:
    """Run torchrun and return its exit code.  Its stderr (the workers' progress) passes through as it comes
    until rank 0 has left its exit code; what follows is torchrun's report of the failed workers (a
    ``ChildFailedError`` traceback).  When rank 0 reported its own error (left in the exit file with the code,
    :func:`_write_exit_code`), that one line is printed and torchrun's report dropped; otherwise the report is
    shown."""
    import subprocess

    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    held: list[bytes] = []
    while chunk := process.stderr.read1(65536):  # type: ignore[attr-defined]
        if exit_file.exists():
            held.append(chunk)
        else:
            _write_stderr(chunk)
    code = process.wait()
    _, message = _read_exit_file(exit_file)
    if code != 0 and message is not None:
        _write_stderr(message.encode() + b"\n")
    elif held:
        _write_stderr(b"".join(held))
    return code


def _write_stderr(data: bytes) -> None:
    stream = getattr(sys.stderr, "buffer", None)
    if stream is not None:
        sys.stderr.flush()
        stream.write(data)
        stream.flush()
    else:  # a text-only stderr
        sys.stderr.write(data.decode(errors="replace"))
        sys.stderr.flush()


def _read_exit_file(path: Path) -> tuple[int | None, str | None]:
    """Rank 0's exit code and error line (``None`` where it left none)."""
    try:
        code, _, message = path.read_text().partition("\n")
        return int(code), message.strip() or None
    except (OSError, ValueError):
        return None, None


def _run_line(result) -> str:
    """One line per run: final metrics when it completed, the step and the labelled last finite ones when not."""
    metrics = result.metrics
    note = " (cached)" if result.cached else ""
    if result.status == "diverged":
        last = metrics.get("last_finite") or {}
        finite = (
            f"last finite metrics (step {last['step']}): test accuracy {last['test_acc']}, "
            f"train loss {last['train_loss']}"
            if last
            else "no finite metrics"
        )
        return (
            f"{result.name}: diverged at step {metrics['diverged_at_step']} of {metrics['steps_total']}{note}; "
            f"{finite}; eta {metrics['effective_lr']} -> {result.path}"
        )
    line = (
        f"{result.name}: {result.status}{note}; test accuracy {metrics['final_test_acc']}, "
        f"train loss {metrics['final_train_loss']}, eta {metrics['effective_lr']} -> {result.path}"
    )
    return line + (f"\n    warning: {metrics['warning']}" if metrics.get("warning") else "")


def _bounds(args: argparse.Namespace) -> int:
    """``mvm bounds``: :func:`proofs_check.bounds.search_bounds`; exit 1 when a result contradicts the catalogue
    (a bound believed true is refuted, a bound believed false is not refuted within the budget, or a search errs)."""
    from proofs_check.bounds import (
        BOUNDS,
        DEFAULT_BUDGET,
        format_bounds,
        search_bounds,
        select_bounds,
        write_bounds_json,
    )

    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    try:
        selected = select_bounds(args.only)
        if budget < 1:
            raise ValueError(f"--budget must be >= 1 (examples per bound), got {budget}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        check_writable(args.json)
    except ValueError as exc:  # unknown ids: the message lists the known ones
        print(f"mvm bounds: {exc}", file=sys.stderr)
        return 2
    except FilesystemError as exc:
        print(f"mvm bounds: error: {exc}", file=sys.stderr)
        return 3
    if args.list:
        for bound in selected or BOUNDS:
            belief = "true" if bound.believed_true else ("false, control" if bound.control else "false")
            print(f"{bound.id:34s} [{belief}] {bound.statement}")
        return 0

    def report(result) -> None:
        if not args.no_progress:
            print(f"{result.bound_id}: {result.verdict} ({result.wall_time_s:.1f} s)", file=sys.stderr, flush=True)

    try:
        results = search_bounds(only=args.only, budget=budget, seed=args.seed, on_result=report)
    except ImportError as exc:  # Hypothesis is not installed
        print(f"mvm bounds: error: {exc}", file=sys.stderr)
        return 2
    print(format_bounds(results))
    try:
        if args.json:
            write_bounds_json(results, args.json)
    except OSError as exc:
        print(f"mvm bounds: error: {_os_error_message(exc, args.json)}", file=sys.stderr)
        return 3
    return 0 if all(r.passed for r in results) else 1


def _print_output(text: str) -> int:
    """Print ``text`` to stdout: 0, or 3 with one line when stdout cannot be written (a full disk, a closed pipe)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:  # the reader left (``mvm derive forms | head``): nothing to report
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:
        print(f"mvm: error: {_os_error_message(exc, '<stdout>')}", file=sys.stderr)
        return 3
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run_empirical(args: argparse.Namespace) -> int:
    """``mvm figures``, ``mvm train`` or ``mvm sweep`` with their errors as exit codes 2 and 3 and one line on
    stderr (in a data-parallel run an error raised on rank 0 and re-raised on the others is reported by rank 0
    alone)."""
    from empirical.distributed import from_rank0
    from empirical.records import CorruptRecordError
    from empirical.sweep import CLUSTER_INSTALL_HINT, MissingDependencyError

    def report(exc: BaseException, text: str) -> None:
        if from_rank0(exc):
            return
        line = f"mvm {args.command}: error: {text}"
        if _launched_by_mvm() and args.command == "train":  # the launcher prints it (torchrun's report dropped)
            _RANK0_ERROR[:] = [line]
        else:
            print(line, file=sys.stderr)

    run = {"figures": _figures, "train": _train, "sweep": _sweep}[args.command]
    try:
        return run(args)
    except MissingDependencyError as exc:  # an optional dependency, not installed: the environment cannot run it
        report(exc, f"submitit is not installed: {CLUSTER_INSTALL_HINT}")
        return 2
    except CorruptRecordError as exc:  # stored data on disk, not the user's input: exit 3, the message names it
        report(exc, f"{_one_line(exc)}; run again with --recompute to discard it and redo it")
        return 3
    except (ValueError, FileNotFoundError) as exc:  # unknown ids, a missing config or --data path, a bad device
        report(exc, _one_line(exc))
        return 2
    except FilesystemError as exc:
        report(exc, str(exc))
        return 3
    except OSError as exc:  # an output that cannot be written, a config that cannot be read
        report(exc, _os_error_message(exc))
        return 3


#: Rank 0's error line under ``mvm train --nproc``, left in the exit file for the launcher to print.
_RANK0_ERROR: list[str] = []


def _launched_by_mvm() -> bool:
    """Whether this is rank 0 of a run launched by ``mvm train --nproc`` (which reads its exit file)."""
    from empirical.distributed import EXIT_FILE_ENV

    return bool(os.environ.get(EXIT_FILE_ENV)) and os.environ.get("RANK", "0") == "0"


def _write_exit_code(code: int) -> None:
    """Rank 0 of a run launched by ``mvm train --nproc`` leaves its exit code (and its error line, which the
    launcher prints in place of torchrun's report) for the launching process."""
    from empirical.distributed import EXIT_FILE_ENV

    if _launched_by_mvm():
        text = "\n".join([str(code), *_RANK0_ERROR])
        try:
            Path(os.environ[EXIT_FILE_ENV]).write_text(text)
        except OSError:
            for line in _RANK0_ERROR:  # the launcher cannot get it: say it here
                print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "derive":
        _, function = DERIVE_TOPICS[args.topic]
        options = {name: getattr(args, name) for name in ("order", "form") if getattr(args, name) is not None}
        rejected = sorted(set(options) - set(DERIVE_TOPIC_OPTIONS.get(args.topic, ())))
        if rejected:
            parser.error(f"topic {args.topic!r} does not take --{', --'.join(rejected)}")
        if "order" in options and not 1 <= options["order"] <= MAX_SERIES_ORDER:
            parser.error(
                f"--order must be an integer in [1, {MAX_SERIES_ORDER}] (derivation time grows steeply with the "
                f"order), got {options['order']}"
            )
        return _print_output(function(args.latex, **options))
    if args.command == "verify":
        return _verify(args)
    if args.command in ("figures", "train", "sweep"):
        code = _run_empirical(args)
        if args.command == "train":
            _write_exit_code(code)
        return code
    if args.command == "bounds":
        return _bounds(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
