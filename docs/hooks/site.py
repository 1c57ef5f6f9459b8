"""MkDocs hook: the pages generated at build time, and the locally served MathJax.

Generated (never typed by hand, so they follow the code):

* ``reference/<package>.md`` for each documented package: its docstring, the table of its modules (found by walking
  the package folder, so a module that moves or splits needs no edit here) and ``::: package``, which renders every
  name of the package's ``__all__``;
* ``reference/cli.md`` from ``mvm --help`` and ``mvm COMMAND --help`` for every subcommand ``build_parser`` defines;
* ``claims/<id>.md`` for every registered claim: statement, reference, measured fields, the check's own
  documentation, the verdict rules and the latest quick results (from the ``mvm verify --json`` file, see
  :func:`_results_file`), and the mutants of ``proofs_check.MUTANTS`` that must break it;
* ``tutorials/<name>.md`` for every ``docs/tutorials/*.py``: the script is executed cell by cell (``# %%``) and
  each cell's printed output is shown below its code.

MathJax 3 comes from the PyPI package ``django-static-mathjax`` (the ``docs`` extra; it has no dependency, Django
included): ``on_post_build`` copies its ``es5`` bundle and fonts into ``site/assets/mathjax`` so the site renders
math with no network.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rst_markdown import rst_to_markdown

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("theory", "empirical", "proofs_check", "paper_figures")
RESULTS = {
    "theory": ("results/verification_quick.json", "docs/results/verification_quick.json"),
    "empirical": ("results/verification_empirical_quick.json", "docs/results/verification_empirical_quick.json"),
}
_TIMES: dict[str, float] = {}


# --- API reference -----------------------------------------------------------------------------------------------


def _first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return rst_to_markdown(doc.strip().split("\n\n")[0].replace("\n", " ")).replace("|", "\\|")


def _package_page(package: str) -> str:
    folder = ROOT / package
    rows = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") and p != "__init__" for p in parts) or (parts[-1] == "__init__" and len(parts) == 2):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        rows.append(f"| `{name}` | {_first_line(path)} |")
    # a public name that is also the name of a submodule (``theory.simulate`` the function and the module) is
    # hidden by the module under ``::: package``: render it from where it is defined
    import importlib

    module = importlib.import_module(package)
    shadowed = []
    for name in getattr(module, "__all__", ()):
        if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
            obj = getattr(module, name)
            if getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
                shadowed += [f"::: {obj.__module__}.{obj.__qualname__}", "    options:", "      heading_level: 3", ""]
    return "\n".join(
        [
            f"# `{package}`",
            "",
            f"> {_first_line(folder / '__init__.py')}",
            "",
            "## Modules",
            "",
            "| module | what it holds |",
            "| --- | --- |",
            *rows,
            "",
            f"## Public names (`{package}.__all__`)",
            "",
            f"::: {package}",
            "    options:",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "      show_submodules: false",
            "      show_if_no_docstring: true",
            "      heading_level: 3",
            "",
            *shadowed,
        ]
    )


# --- CLI reference -----------------------------------------------------------------------------------------------


def _help(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    done = subprocess.run(
        [sys.executable, "-m", "mvm", *args, "--help"], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return done.stdout


def _cli_page() -> str:
    import argparse

    from mvm.cli import build_parser

    parser = build_parser()
    commands: list[str] = []
    for action in parser._actions:  # argparse keeps the subcommands on its one _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            commands = list(action.choices)
    lines = [
        "# `mvm` command line",
        "",
        "Generated when the site is built by running `mvm --help` and `mvm COMMAND --help` for every subcommand.",
        "",
        "```text",
        "$ mvm --help",
        _help().rstrip(),
        "```",
    ]
    for command in commands:
        lines += ["", f"## `mvm {command}`", "", "```text", f"$ mvm {command} --help", _help(command).rstrip(), "```"]
    return "\n".join(lines) + "\n"


# --- claim pages -------------------------------------------------------------------------------------------------


def _results_file(kind: str) -> tuple[Path | None, str]:
    """The results JSON a claim page shows and a sentence saying which file it is and when it was written."""
    for relative in RESULTS[kind]:
        path = ROOT / relative
        if path.is_file():
            meta = path.with_suffix(".meta.json")
            if meta.is_file():
                info = json.loads(meta.read_text(encoding="utf-8"))
                when = f"{info['written']} by `{info['command']}` at commit `{info['commit']}`"
            else:
                stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
                when = f"{stamp:%Y-%m-%d %H:%M} UTC (file time)"
            return path, f"Results read from `{relative}`, written {when}."
    return None, (
        f"No results file: neither `{RESULTS[kind][0]}` (written by `make reproduce`) nor a committed copy "
        f"`{RESULTS[kind][1]}` exists, so this build shows no measured values."
    )


def _load_results(kind: str) -> tuple[dict[str, list[dict[str, Any]]], str]:
    path, provenance = _results_file(kind)
    by_claim: dict[str, list[dict[str, Any]]] = {}
    if path is not None:
        for entry in json.loads(path.read_text(encoding="utf-8")):
            by_claim.setdefault(entry["claim_id"].split(".")[0], []).append(entry)
    return by_claim, provenance


def _cell(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _short(claim: Any) -> str:
    """``3`` for theory claim 3, ``E1`` for ``e1_small_eta`` (the real-network claims are numbered from 101)."""
    return str(claim.number) if claim.kind == "theory" else claim.claim_id.split("_")[0].upper()


def _claim_page(claim: Any, results: list[dict[str, Any]], provenance: str, mutants: list[tuple[str, Any]]) -> str:
    import inspect

    label = f"Claim {claim.number}" if claim.kind == "theory" else f"Real-network claim {_short(claim)}"
    lines = [
        f"# {label}: `{claim.claim_id}`",
        "",
        f"**Statement.** {claim.statement}",
        "",
        f"**Paper result.** {claim.reference}",
        "",
        "**What is measured.** The check reads these fields of the `MethodSet` under test: "
        + ", ".join(f"`{f}`" for f in claim.fields)
        + ". The predictions come from the theory, never from the set under test.",
        "",
    ]
    # the check's module documents the setting and the verdict rules; the check function may add to it
    doc = "\n\n".join(d for d in (inspect.getdoc(inspect.getmodule(claim.check)), inspect.getdoc(claim.check)) if d)
    if doc:
        lines += ['???+ note "What the check measures (its documentation)"', ""]
        lines += ["    " + line if line else "" for line in rst_to_markdown(doc).splitlines()]
        lines += [""]
    lines += ["## Verdict rules and latest quick results", "", provenance, ""]
    if results:
        lines += [
            "| sub-claim | predicted | measured | interval | verdict | rule |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in results:
            lines.append(
                f"| `{r['claim_id']}` | {_cell(r['predicted'])} | {_cell(r['measured'])} | "
                f"[{_cell(r['ci_low'])}, {_cell(r['ci_high'])}] | **{r['status'].upper()}** | {_cell(r['criterion'])} |"
            )
        passed = sum(r["passed"] for r in results)
        lines += ["", f"{passed} of {len(results)} sub-claims pass."]
    else:
        lines += ["No result for this claim in that file."]
    lines += ["", "## Wrong methods that must break it", ""]
    if mutants:
        lines += [
            "Each mutant below is a `MethodSet` with a deliberate error (`proofs_check.MUTANTS`); "
            "`mvm verify --mutants` runs them and fails when one survives: this is the check's power.",
            "",
            "| mutant | what is wrong | must break |",
            "| --- | --- | --- |",
        ]
        for name, mutant in mutants:
            breaks = ", ".join(f"`{b}`" for b in mutant.must_break if b.split(".")[0] == claim.claim_id)
            note = " (full run only)" if any(k.split(".")[0] == claim.claim_id for k in mutant.full_only) else ""
            lines.append(f"| `{name}` | {_cell(mutant.description)} | {breaks}{note} |")
    elif claim.kind == "empirical":
        lines += _control_lines(claim.claim_id)
    else:
        lines += ["No mutant of `proofs_check.MUTANTS` targets this claim."]
    if claim.kind == "theory":
        lines += [
            "",
            "How often this check fails a 1-20% learning-rate or noise-variance error over 20 seeds, and how often it "
            "fails the reference: the measured power table in [Verification](../guide/verification.md) "
            "(`fig_verifier_power`).",
        ]
    return "\n".join(lines) + "\n"


def _control_lines(claim_id: str) -> list[str]:
    """The negative controls of a real-network claim (``proofs_check.real_networks.REAL_CONTROLS``)."""
    from proofs_check.real_networks import REAL_CONTROLS

    controls = [(name, c) for name, c in REAL_CONTROLS.items() if c.must_fail == claim_id]
    if not controls:
        return ["No negative control of `REAL_CONTROLS` targets this claim."]
    lines = [
        "Each control below is a `RealNetworkMethods` with a deliberate error "
        "(`proofs_check.real_networks.REAL_CONTROLS`); the tests run it at tiny scale and require this claim to "
        "fail for it.",
        "",
        "| control | what is wrong |",
        "| --- | --- |",
    ]
    return lines + [f"| `{name}` | {_cell(control.description)} |" for name, control in controls]


def _claim_pages() -> dict[str, str]:
    from proofs_check import MUTANTS, available_claims

    pages: dict[str, str] = {}
    index = [
        "# The paper's claims",
        "",
        "One page per registered claim (`proofs_check.available_claims()`), generated when the site is built.",
        "",
    ]
    for kind in ("theory", "empirical"):
        results, provenance = _load_results(kind)
        index += [
            "## Theory claims (`mvm verify`)" if kind == "theory" else "## Real-network claims (`--empirical`)",
            "",
            provenance,
            "",
            "| claim | statement | quick verdicts |",
            "| --- | --- | --- |",
        ]
        for claim_id, claim in available_claims(kind).items():
            mutants = [(n, m) for n, m in MUTANTS.items() if any(b.split(".")[0] == claim_id for b in m.must_break)]
            mine = results.get(claim_id, [])
            pages[f"claims/{claim_id}.md"] = _claim_page(claim, mine, provenance, mutants)
            verdicts = f"{sum(r['passed'] for r in mine)}/{len(mine)} pass" if mine else "not run"
            index.append(f"| [`{claim_id}`]({claim_id}.md) | {_cell(claim.statement)} | {verdicts} |")
        index.append("")
    index += [
        "## Power of the checks",
        "",
        "How often each check fails a wrong method, over seeds (`fig_verifier_power`):",
        "",
        "![verifier power](../figures/fig_verifier_power.png)",
        "",
    ]
    pages["claims/index.md"] = "\n".join(index)
    return pages


# --- executed tutorials ------------------------------------------------------------------------------------------


def _cells(source: str) -> tuple[str, list[tuple[str, str]]]:
    """(module docstring, [(markdown, code), ...]) of a script split at ``# %%`` lines."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    body_start = tree.body[0].end_lineno if doc else 0
    chunks: list[list[str]] = [[]]
    for line in source.splitlines()[body_start:]:
        if line.startswith("# %%"):
            chunks.append([])
        else:
            chunks[-1].append(line)
    cells = []
    for chunk in chunks:
        text: list[str] = []
        while chunk and (chunk[0].startswith("#") or not chunk[0].strip()):
            line = chunk.pop(0)
            text.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        code = "\n".join(chunk).strip("\n")
        if code or "".join(text).strip():
            cells.append(("\n".join(text).strip(), code))
    return doc, cells


def _tutorial_page(path: Path, images: list[tuple[str, Path]]) -> str:
    doc, cells = _cells(path.read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    lines = [doc, "", f"*Executed when this site was built (source: `docs/tutorials/{path.name}`).*", ""]
    start = time.perf_counter()
    for text, code in cells:
        if text:
            lines += [text, ""]
        if not code:
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, str(path), "exec"), namespace)  # a failing tutorial fails the build
        lines += ["```python", code, "```", ""]
        if buffer.getvalue().strip():
            lines += ['```text title="output"', buffer.getvalue().rstrip(), "```", ""]
        for image in namespace.pop("DOCS_IMAGES", []):
            target = f"tutorials/images/{path.stem}_{Path(image).name}"
            images.append((target, Path(image)))
            lines += [f"![{Path(image).stem}](images/{path.stem}_{Path(image).name})", ""]
    _TIMES[f"tutorial {path.name}"] = time.perf_counter() - start
    return "\n".join(lines)


# --- hooks -------------------------------------------------------------------------------------------------------


def on_files(files: Files, config: Any) -> Files:
    generated: dict[str, str] = {}
    start = time.perf_counter()
    for package in PACKAGES:
        generated[f"reference/{package}.md"] = _package_page(package)
    generated["reference/cli.md"] = _cli_page()
    _TIMES["reference pages"] = time.perf_counter() - start
    start = time.perf_counter()
    generated.update(_claim_pages())
    _TIMES["claim pages"] = time.perf_counter() - start
    images: list[tuple[str, Path]] = []
    if os.environ.get("MVM_DOCS_SKIP_TUTORIALS") != "1":
        for script in sorted((ROOT / "docs" / "tutorials").glob("*.py")):
            generated[f"tutorials/{script.stem}.md"] = _tutorial_page(script, images)
    else:
        for script in sorted((ROOT / "docs" / "tutorials").glob("*.py")):
            generated[f"tutorials/{script.stem}.md"] = f"# {script.stem}\n\nNot executed (MVM_DOCS_SKIP_TUTORIALS=1).\n"
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    for uri, source in images:
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_post_build(config: Any) -> None:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise RuntimeError("MathJax is missing: install the docs extra (`pip install -e '.[docs]'`, or `make docs`)")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / "tex-mml-chtml.js", target / "tex-mml-chtml.js")
    shutil.copytree(
        es5 / "output" / "chtml" / "fonts" / "woff-v2", target / "output/chtml/fonts/woff-v2", dirs_exist_ok=True
    )
    for name, seconds in _TIMES.items():
        print(f"docs build: {name} {seconds:.1f} s", file=sys.stderr)


def on_config(config: Any) -> Any:
    """Expand the ``Claims`` entry of the nav into the index and one page per registered claim."""
    from proofs_check import available_claims

    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and item.get("Claims") == "claims/index.md":
            pages: list[Any] = [{"Overview": "claims/index.md"}]
            for kind in ("theory", "empirical"):
                for claim_id, claim in available_claims(kind).items():
                    pages.append({f"{_short(claim)}. {claim_id}": f"claims/{claim_id}.md"})
            config["nav"][i] = {"Claims": pages}
    return config
