"""``mvm``: argument parsing only; every subcommand calls one public function of the packages.

Subcommands exist only once they do real work:

* ``mvm derive TOPIC [--latex]`` prints derived formulas (topics in :data:`DERIVE_TOPICS`).
* ``mvm verify [--quick] [--json PATH] [--markdown PATH] [--only ID ...]`` runs the claim checks of
  :mod:`proofs_check`, prints the table and exits non-zero when a claim fails.
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

    verify = commands.add_parser("verify", help="check the paper's claims: predicted vs measured, with verdicts")
    verify.add_argument("--quick", action="store_true", help="CI-sized checks (minutes on 2 CPU cores)")
    verify.add_argument("--json", metavar="PATH", help="write the results as a JSON list of ClaimResult dicts")
    verify.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    verify.add_argument("--only", nargs="+", metavar="ID", help="run only these claim ids")
    verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _verify(args: argparse.Namespace) -> int:
    from proofs_check import format_markdown, format_table, run_all, write_json
    from proofs_check.report import write_text

    try:
        results = run_all(quick=args.quick, only=args.only, progress=not args.no_progress)
    except ValueError as exc:  # unknown claim ids: the message lists the registered ones
        print(f"mvm verify: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        write_json(results, args.json)
    if args.markdown:
        write_text(format_markdown(results), args.markdown)
    return 0 if all(r.passed for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "derive":
        _, function = DERIVE_TOPICS[args.topic]
        print(function(args.latex))
        return 0
    if args.command == "verify":
        return _verify(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
