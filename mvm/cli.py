"""``mvm``: argument parsing only; every subcommand calls one public function of the packages.

Subcommands exist only once they do real work:

* ``mvm derive TOPIC [--latex]`` prints derived formulas (topics in :data:`DERIVE_TOPICS`).
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "derive":
        _, function = DERIVE_TOPICS[args.topic]
        print(function(args.latex))
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
