"""Dependency direction of the packages (DESIGN.md 1): theory <- empirical <- proofs_check <- paper_figures; mvm on top.

Every ``.py`` file of the five packages is parsed with :mod:`ast`; every import counts, including those inside
functions, relative ones (resolved against the file's package) and ``importlib.import_module`` / ``__import__``
calls with a literal name.  A checker fed a fake violating source must report it (negative controls), and
``import theory`` must not load torch.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "empirical", "proofs_check", "paper_figures", "mvm")
#: The packages each package must not import (mvm is the dispatcher on top and may import all of them).
FORBIDDEN: dict[str, frozenset[str]] = {
    "theory": frozenset({"empirical", "proofs_check", "paper_figures", "mvm"}),
    "empirical": frozenset({"proofs_check", "paper_figures", "mvm"}),
    "proofs_check": frozenset({"paper_figures", "mvm"}),
    "paper_figures": frozenset({"mvm"}),
    "mvm": frozenset(),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(
    source: str, module: str, is_package: bool = False, with_names: bool = False
) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source`` of module ``module``, anywhere in the file.

    ``with_names``: ``from X import y`` also counts as ``X.y`` (``y`` may be a submodule: ``from . import train``).
    """
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if with_names:
                found += [(node.lineno, f"{name}.{alias.name}" if name else alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def layering_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports in ``source`` (of module ``module``, e.g. ``"theory.quadratic"``) that break the direction."""
    owner = module.split(".")[0]
    forbidden = FORBIDDEN[owner]
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(source, module, is_package)
        if name.split(".")[0] in forbidden
    ]


#: Within the training stack: the modules a module must not import, so that the pieces the single-run loop and the
#: ensemble share (``empirical.run``) sit below both, neither engine imports the other, and only the grid driver
#: (``empirical.experiment``) imports both.  ``from empirical import train`` counts as importing ``empirical.train``.
MODULE_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "empirical.run": ("empirical.train", "empirical.ensemble", "empirical.experiment"),
    "empirical.train": ("empirical.ensemble", "empirical.experiment"),
    "empirical.ensemble": ("empirical.train", "empirical.experiment"),
    "empirical.diagnostics": ("empirical.train", "empirical.ensemble", "empirical.experiment"),
}


def module_violations(source: str, module: str) -> list[str]:
    """Imports in ``source`` of ``module`` of the modules :data:`MODULE_FORBIDDEN` rules out for it."""
    forbidden = MODULE_FORBIDDEN.get(module, ())
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(source, module, with_names=True)
        if name in forbidden
    ]


def _package_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_every_package_is_scanned() -> None:
    files = _package_files()
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py") in files, package
    assert len(files) > 40


def test_dependency_direction() -> None:
    violations = []
    for path in _package_files():
        violations += layering_violations(path.read_text(encoding="utf-8"), _module_name(path), path.stem == "__init__")
    assert not violations, "\n".join(violations)


def test_training_stack_module_structure() -> None:
    """``empirical.run`` imports neither engine, the engines do not import each other, diagnostics no orchestrator."""
    violations = []
    for module in MODULE_FORBIDDEN:
        path = ROOT / Path(*module.split(".")).with_suffix(".py")
        violations += module_violations(path.read_text(encoding="utf-8"), module)
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("empirical.run", "from empirical.train import train_run\n"),
        ("empirical.run", "def f():\n    from . import ensemble\n"),
        ("empirical.ensemble", "from empirical import train\n"),
        ("empirical.ensemble", "import empirical.experiment\n"),
        ("empirical.train", "from empirical.ensemble import train_ensemble\n"),
        ("empirical.diagnostics", "def load():\n    from empirical.train import load_run_model\n"),
        ("empirical.diagnostics", "from empirical.experiment import run_experiment\n"),
        ("empirical.diagnostics", "import empirical.train as train\n"),
    ],
)
def test_module_checker_reports_a_violation(module: str, source: str) -> None:
    """Negative controls: each fake source imports a module ruled out for its module once."""
    violations = module_violations(source, module)
    assert len(violations) == 1 and violations[0].startswith(f"{module}:"), violations


def test_module_checker_accepts_the_shared_pieces() -> None:
    source = "from empirical.run import load_run_model\nfrom .data import derive_seed\nimport empirical.models\n"
    assert module_violations(source, "empirical.diagnostics") == []
    assert module_violations("from empirical.train import train_run\n", "empirical.experiment") == []


@pytest.mark.parametrize(
    ("module", "source", "is_package"),
    [
        ("theory.fake", "import paper_figures.stats\n", False),
        ("theory.fake", "def f():\n    from empirical.optim import NormalizedSGDM\n", False),
        ("empirical.fake", "import numpy, proofs_check\n", False),
        ("empirical.fake", "import importlib\nimportlib.import_module('paper_figures.build')\n", False),
        ("proofs_check.fake", "class A:\n    def m(self):\n        import mvm.cli\n", False),
        ("proofs_check.fake", "__import__('paper_figures')\n", False),
        ("paper_figures.fake", "from mvm import main\n", False),
        # relative imports that climb above the top-level package (an ImportError at run time) count as absolute
        ("theory.sub.fake", "from ...paper_figures import stats\n", False),
        ("theory.sub", "from ...proofs_check import run_all\n", True),
    ],
)
def test_checker_reports_a_violation(module: str, source: str, is_package: bool) -> None:
    """Negative controls: each fake module breaks the direction once, and the checker says where."""
    violations = layering_violations(source, module, is_package)
    assert len(violations) == 1 and violations[0].startswith(f"{module}:"), violations


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("mvm.fake", "import paper_figures, proofs_check, empirical, theory\n"),
        ("paper_figures.fake", "from proofs_check.result import ClaimResult\nfrom . import stats\n"),
        ("empirical.fake", "from theory.quadratic import stationary_covariance\nfrom .records import ResultStore\n"),
        ("theory.fake", "import numpy\nfrom theory import params\nfrom .forms import Step\n"),
    ],
)
def test_checker_accepts_the_allowed_direction(module: str, source: str) -> None:
    assert layering_violations(source, module) == []


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_modules("from . import stats\n", "paper_figures.build") == [(1, "paper_figures")]
    assert imported_modules("from .stats import Interval\n", "paper_figures", is_package=True) == [
        (1, "paper_figures.stats")
    ]
    assert imported_modules("from ..theory import quadratic\n", "empirical.sub.mod") == [(1, "empirical.theory")]


def test_importing_theory_does_not_load_torch() -> None:
    code = "import sys, theory, theory.stationary; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
    # the subprocess imported this checkout's theory, not another copy
    where = subprocess.run(
        [sys.executable, "-c", "import theory; print(theory.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert Path(where.stdout.strip()).resolve().parent == ROOT / "theory"
