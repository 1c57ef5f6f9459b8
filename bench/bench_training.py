"""Training benchmarks (not tests): ratios measured side by side in one run (DESIGN.md section 7).

1. Instrumentation overhead: per-step time of the training loop of ``empirical.train`` (schedule, loss
   buffering, divergence checks, progress bar; evaluations stubbed out because they are work, not overhead)
   against a bare PyTorch loop on the same model, data, batches and optimizer.  Target: under 5%.
2. A grid of 16 small runs (4 learning rates x SGD/SGDM x 2 seeds, MLPs on digits, 1000 steps each) trained as one
   ``torch.func`` ensemble against the same 16 runs one after another, end to end through
   ``run_experiment`` (records and checkpoints included).  Target: at least 4x faster on 2 CPU cores.

Each measurement is repeated, interleaved, and summarised by its minimum (the least disturbed by other
processes on the machine, as timeit recommends).  Run: ``python bench/bench_training.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from empirical.config import RunConfig, config_from_dict
from empirical.data import EpochSampler
from empirical.experiment import run_experiment
from empirical.models import build_model
from empirical.optim import NormalizedSGDM
from empirical.run import prepare_dataset
from empirical.train import _Run


def _config(model: dict, data: str, steps: int, batch: int, **extra: dict) -> RunConfig:
    return config_from_dict({
        "data": {"name": data}, "model": model,
        "optimizer": {"name": "normalized_sgdm", "eta": 0.05, "momentum": 0.9},
        "train": {"batch_size": batch, "unit": "step", "length": steps, "eval_every": steps, "log_every": 50},
        **extra,
    })  # fmt: skip


def _bare_loop(config: RunConfig, dataset, steps: int) -> float:
    """Seconds per step of the plainest loop: index the batch, forward, backward, optimizer step."""
    model = build_model(config.model.name, dataset, config.seed, **config.model.options)
    optimizer = NormalizedSGDM(model.parameters(), lr=0.05, momentum=0.9)
    sampler = EpochSampler(len(dataset.train), config.train.batch_size, config.seed)
    inputs, targets = dataset.train.inputs, dataset.train.targets
    started = time.perf_counter()
    for step in range(steps):
        index = sampler.indices(step)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs[index]), targets[index]).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def _our_loop(config: RunConfig, dataset, steps: int) -> float:
    run = _Run(config, dataset, torch.device("cpu"), quiet=True)
    run._evaluate_row = lambda running: {}  # evaluations are work, not instrumentation overhead
    run.progress.curves.append({})  # as if the step-0 evaluation had happened
    started = time.perf_counter()
    run.train(checkpoint_path=None)
    return (time.perf_counter() - started) / steps


def _best_pair(first: Callable[[], float], second: Callable[[], float], repeats: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        a.append(first())
        b.append(second())
    return min(a), min(b)


def bench_overhead(repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    cases = [
        ("MLP 64-128-10 on digits, B=32", _config({"name": "mlp", "hidden": [128]}, "digits", 600, 32)),
        ("small CNN on MNIST-1D, B=128", _config({"name": "small_cnn", "width": 32}, "mnist1d", 100, 128)),
    ]
    for label, config in cases:
        dataset = prepare_dataset(config, torch.device("cpu"))
        steps = config.train.length
        _bare_loop(config, dataset, 50), _our_loop(dataclasses.replace(config, train=dataclasses.replace(
            config.train, length=50, eval_every=50)), dataset, 50)  # fmt: skip  # warm-up
        bare, ours = _best_pair(lambda c=config, d=dataset, s=steps: _bare_loop(c, d, s),
                                  lambda c=config, d=dataset, s=steps: _our_loop(c, d, s), repeats)  # fmt: skip
        rows.append((label, bare, ours))
    return rows


def bench_ensemble(repeats: int, members_steps: int = 1000) -> tuple[float, float]:
    grid = _config(
        {"name": "mlp", "hidden": [32]}, "digits", members_steps, 32,
        grid={"optimizer.eta": [0.02, 0.05, 0.1, 0.2], "optimizer.momentum": [0.0, 0.9], "seed": [0, 1]},
    )  # fmt: skip
    assert len(grid.grid) == 3

    def timed(vectorize: bool) -> float:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            results = run_experiment(dataclasses.replace(grid, vectorize=vectorize), out=out, quiet=True)
            elapsed = time.perf_counter() - started
        assert len(results) == 16 and all(r.status == "completed" for r in results)
        return elapsed

    timed(True)  # warm-up (imports, first vmap trace)
    return _best_pair(lambda: timed(False), lambda: timed(True), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="repeats of each loop timing (ensemble: half)")
    # One thread by default: when another process occupies one of 2 cores, OpenMP's second thread stalls the
    # loop for milliseconds at a time and the timings measure the neighbour, not the code.
    parser.add_argument("--threads", type=int, nargs="*", default=[1], help="torch intra-op thread counts")
    args = parser.parse_args()
    print("## Training benchmarks (minimum of interleaved repeats)\n")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"### torch threads: {threads}\n")
        print("| loop | bare PyTorch ms/step | empirical.train ms/step | overhead |")
        print("|---|---|---|---|")
        for label, bare, ours in bench_overhead(args.repeats):
            print(f"| {label} | {bare * 1e3:.3f} | {ours * 1e3:.3f} | {100 * (ours / bare - 1):+.1f}% (target < 5%) |")
        sequential, ensemble = bench_ensemble(max(1, args.repeats // 2))
        print("\n| 16 runs, MLP 64-32-10 on digits, 1000 steps each | seconds |")
        print("|---|---|")
        print(f"| one after another (run_experiment, vectorize=false) | {sequential:.2f} |")
        print(f"| one torch.func ensemble (vectorize=true) | {ensemble:.2f} |")
        print(f"| speed-up | {sequential / ensemble:.1f}x (target >= 4x) |\n")


if __name__ == "__main__":
    main()
