"""``mvm``: argument parsing only; every subcommand calls one public function of the packages.

Subcommands exist only once they do real work:

* ``mvm derive TOPIC [--latex]`` prints derived formulas (topics in :data:`DERIVE_TOPICS`).
* ``mvm train CONFIG [--device cpu|cuda] [--seed N] [--resume] [--out DIR] [--quiet]`` runs one
  experiment (:func:`empirical.train.run_experiment`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _derive_forms(latex: bool) -> str:
    from theory.forms import format_proofs

    return format_proofs(latex=latex)


#: ``mvm derive`` topics: name -> (one-line help, function(latex) -> text).
DERIVE_TOPICS: dict[str, tuple[str, Callable[[bool], str]]] = {
    "forms": ("parameterisations, effective learning rate, coupling identity (symbolic proofs)", _derive_forms),
}


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
    train = commands.add_parser("train", help="run one training experiment from a TOML config file")
    train.add_argument("config", help="path of the experiment's TOML file (see configs/)")
    train.add_argument("--device", help="override the config's device: cpu, cuda or cuda:N")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    train.add_argument("--out", default="runs", help="results folder (default: runs)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _train(args: argparse.Namespace) -> int:
    from empirical.train import run_experiment

    results = run_experiment(
        args.config, device=args.device, seed=args.seed, resume=args.resume, out=args.out, quiet=args.quiet
    )
    for result in results:
        metrics = result.metrics
        note = " (cached)" if result.cached else ""
        print(
            f"{result.name}: {result.status}{note}; test accuracy {metrics['final_test_acc']}, "
            f"train loss {metrics['final_train_loss']}, eta {metrics['effective_lr']} -> {result.path}"
        )
    return 0 if all(r.status == "completed" for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "derive":
        _, function = DERIVE_TOPICS[args.topic]
        print(function(args.latex))
        return 0
    if args.command == "train":
        try:
            return _train(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"mvm train: error: {exc}", file=sys.stderr)
            return 2
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
