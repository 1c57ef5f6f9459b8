"""Fuzz the package's boundaries (issue 13, item 7): no raw exception escapes, only the documented ones.

Targets: the config loader (documents mutated around the shipped ``configs/*.toml``, and arbitrary bytes as a
file), the public ``theory`` entry points, the ``empirical`` entry points, and ``mvm``'s argument parsing (the
CLI's ``main`` called in-process with fuzzed argv; the expensive work it would start is replaced by stubs, so
what is fuzzed is parsing and validation).  Allowed outcomes:

* a Python call returns, or raises ``ValueError``/``TypeError`` whose one-line message names the parameter;
* ``mvm`` returns or exits with 0, 2 or 3 (1 needs a real failed claim, impossible with the stubs), and writes
  at most one line to stderr after argparse's usage line, never a traceback.

The tallies of what was tried are printed at the end of the module (``pytest -s tests/test_fuzz.py``); the
table of ``docs/guide/bad_input.md`` ("Bad input") comes from them.  Hypothesis runs the profile of
``tests/conftest.py`` (``ci``: derandomized); each test here runs ``FUZZ_FACTOR`` times the profile's
``max_examples``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import io
import math
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empirical.config import RunConfig, config_from_dict, load_config
from empirical.data import Dataset, TensorSplit
from empirical.models import build_model
from empirical.optim import NormalizedSGDM
from theory.params import MomentumParams, effective_lr, pytorch_lr
from theory.problems import log_cosh_well
from theory.quadratic import check_quadratic, sde_stationary_covariance, stability_threshold, stationary_covariance
from theory.simulate import SGD, SGDM, simulate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FUZZ_FACTOR = 8
EXAMPLES = settings.default.max_examples * FUZZ_FACTOR  # ci profile: 25 * 8 = 200 per test
FUZZ = settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
DOCUMENTS = [tomllib.loads(path.read_text()) for path in CONFIGS]
TALLY: collections.Counter[tuple[str, str]] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_tally() -> Iterator[None]:
    yield
    print("\nfuzz tally (target, outcome): count")
    for (target, outcome), count in sorted(TALLY.items()):
        print(f"  {target:28s} {outcome:34s} {count}")


def _expect_documented(target: str, call, names: tuple[str, ...]) -> object:
    """Run ``call``; a ``ValueError``/``TypeError`` must name one of ``names`` on one line; others escape."""
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert message and "\n" not in message, f"{target}: {type(exc).__name__} without a one-line message"
        assert any(name in message for name in names), f"{target}: message names none of {names}: {message}"
        TALLY[target, f"rejected ({type(exc).__name__})"] += 1
        return None
    TALLY[target, "accepted"] += 1
    return result


# ------------------------------------------------------------------------------------------ values

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
weird_numbers = st.sampled_from([0, -1, 1, 0.0, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, 2**63, -(2**70)])
scalars = st.one_of(
    st.floats(0.01, 0.99),  # valid for most parameters: the happy path is fuzzed too
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    finite,
    weird_numbers,
    st.text(max_size=6),
    st.complex_numbers(max_magnitude=10, allow_nan=False),
    st.none(),
)
toml_scalars = st.one_of(st.booleans(), st.integers(-(2**31), 2**31), finite, weird_numbers, st.text(max_size=8))
#: Values that are valid for many keys, so that mutated documents are sometimes accepted.
plausible = st.sampled_from([0.1, 0.5, 0.9, 1, 2, 16, 32, 100, [16], [8, 8], [50], "step", "epoch", "fixed", False])
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=2)
    ),
    max_leaves=6,
)
anything = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))

# ----------------------------------------------------------------------------------- config loader

SECTIONS = ("data", "model", "optimizer", "train", "svag", "grid")
KNOWN_KEYS = (
    "name eta lr momentum weight_decay nesterov batch_size length unit milestones lr_decay warmup cosine eval_every "
    "eval_train_samples eval_test_samples eval_batch_size checkpoint_every log_every dtype amp_bf16 precision "
    "sync_batchnorm channels_last compile ell "
    "momentum_scaling hidden width downsample zero_init_residual model_dir max_length dropout train_top_layers root "
    "few_shot_k train_subset test_fraction split_seed num_samples generator_seed num_workers image_size vectorize "
    "seed device optimizer.momentum optimizer.eta train.batch_size svag.ell"
).split()
#: Keys whose values may legitimately be booleans; anywhere else a bool must be refused.
BOOL_KEYS = {
    "nesterov",
    "cosine",
    "amp_bf16",
    "sync_batchnorm",
    "channels_last",
    "compile",
    "vectorize",
    "zero_init_residual",
}


@st.composite
def mutated_documents(draw) -> tuple[dict, list[tuple[str, object]]]:
    document = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    edits = []
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from((*SECTIONS, "")))
        key = draw(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=5)))
        target = document if not section else document.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        if draw(st.booleans()) and key in target:
            del target[key]
            edits.append((f"{section}.{key}", "<deleted>"))
        else:
            value = draw(st.one_of(plausible, toml_values))
            target[key] = value
            edits.append((f"{section}.{key}", value))
    return document, edits


def _bools_only_where_allowed(config: RunConfig) -> None:
    def walk(value: object, key: str) -> None:
        if isinstance(value, bool):
            assert key in BOOL_KEYS, f"a bool was accepted as {key!r}"
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)

    walk(dataclasses.asdict(config), "")


@FUZZ
@given(mutated_documents())
def test_fuzz_config_from_dict(case: tuple[dict, list]) -> None:
    document, edits = case
    keys = tuple({path.rpartition(".")[2] for path, _ in edits} | {"[", "config", "grid", "option", "name"})
    config = _expect_documented("config_from_dict", lambda: config_from_dict(document), keys)
    if config is not None:
        _bools_only_where_allowed(config)


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_load_config_bytes(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.toml"
        path.write_bytes(content)
        _expect_documented("load_config(bytes)", lambda: load_config(path), ("fuzzed.toml",))


# ---------------------------------------------------------------------------------------- theory

matrices = st.one_of(
    scalars,
    st.lists(st.lists(st.one_of(finite, weird_numbers, st.booleans()), min_size=1, max_size=3), min_size=1, max_size=3),
    st.integers(1, 3).flatmap(
        lambda d: st.lists(st.floats(-3, 3), min_size=d * d, max_size=d * d).map(lambda v: np.reshape(v, (d, d)))
    ),
    st.sampled_from(
        [np.eye(2), np.eye(2) * (1 + 1j), np.diag([1.0, math.nan]), np.ones((2, 3)), np.eye(2, dtype=bool)]
    ),
)


@FUZZ
@given(anything, anything, st.sampled_from(["params", "from_pytorch", "from_alpha", "effective", "pytorch"]))
def test_fuzz_momentum_parameters(a: object, b: object, entry: str) -> None:
    calls = {
        "params": lambda: MomentumParams(a, b),
        "from_pytorch": lambda: MomentumParams.from_pytorch(a, b),
        "from_alpha": lambda: MomentumParams.from_alpha(0.1, a, b),
        "effective": lambda: effective_lr(a, b),
        "pytorch": lambda: pytorch_lr(a, b),
    }
    _expect_documented(f"theory.{entry}", calls[entry], ("eta", "beta", "gamma", "alpha", "c ", "1 - beta"))


@FUZZ
@given(matrices, matrices, anything, anything, st.one_of(st.sampled_from(["heavy_ball", "nesterov", "sgd"]), anything))
def test_fuzz_quadratic_theory(H: object, Sigma: object, eta: object, beta: object, method: object) -> None:
    names = ("H", "Sigma", "eta", "beta", "stationary law", "stable", "positive definite")
    _expect_documented("theory.check_quadratic", lambda: check_quadratic(H, Sigma), names)
    _expect_documented("theory.stationary_covariance", lambda: stationary_covariance(H, Sigma, eta, beta), names)
    _expect_documented("theory.sde_stationary_covariance", lambda: sde_stationary_covariance(H, Sigma, eta), names)
    _expect_documented("theory.stability_threshold", lambda: stability_threshold(beta, method), ("beta", "method"))


PROBLEM = log_cosh_well()


@FUZZ
@given(
    anything, anything, st.one_of(st.integers(1, 20), anything), st.one_of(st.integers(1, 8), anything), st.booleans()
)
def test_fuzz_simulators(eta: object, beta: object, n_steps: object, n_paths: object, momentum: bool) -> None:
    names = ("eta", "beta", "sigma", "time_scale", "n_steps", "n_paths", "observe_every", "seed", "x0")
    build = (lambda: SGDM(PROBLEM, eta, beta)) if momentum else (lambda: SGD(PROBLEM, eta))
    method = _expect_documented("theory.SGD/SGDM", build, names)
    if method is not None:
        steps = n_steps if not isinstance(n_steps, int) else min(max(n_steps, -1), 20)
        paths = n_paths if not isinstance(n_paths, int) else min(max(n_paths, -1), 8)
        _expect_documented("theory.simulate", lambda: simulate(method, [0.5], steps, paths, seed=0), names)


# ------------------------------------------------------------------------------------- empirical

TINY = Dataset("tiny", TensorSplit(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), None, 2, (1, 8, 8))
small_ints = st.one_of(st.integers(-3, 24), st.sampled_from([True, 2.5, "abc", None, [4], [-5], [0], "8"]))


@FUZZ
@given(
    st.sampled_from(["mlp", "small_cnn", "resnet50", "vgg", ""]),
    st.dictionaries(
        st.sampled_from(["hidden", "width", "downsample", "zero_init_residual", "depth"]),
        st.one_of(small_ints, st.lists(small_ints, max_size=3)),
        max_size=3,
    ),
)
def test_fuzz_build_model(name: str, options: dict) -> None:
    if name == "resnet50" and "zero_init_residual" in options and isinstance(options["zero_init_residual"], bool):
        options = {**options, "zero_init_residual": "no"}  # a valid ResNet-50 is slow to build: keep it invalid
    names = ("model", *options)
    _expect_documented("empirical.build_model", lambda: build_model(name, TINY, 0, **options), names)


@FUZZ
@given(anything, anything, anything, anything, st.sampled_from(["init", "step", "load"]))
def test_fuzz_normalized_sgdm(lr: object, momentum: object, weight_decay: object, nesterov: object, when: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    names = ("lr", "momentum", "weight_decay", "nesterov", "state_dict")
    settings_ = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    if when == "init":
        _expect_documented("empirical.NormalizedSGDM()", lambda: NormalizedSGDM(model.parameters(), **settings_), names)
        return
    optimizer = NormalizedSGDM(model.parameters(), lr=0.1, momentum=0.5)
    model(torch.ones(1, 2)).sum().backward()
    if when == "step":
        optimizer.param_groups[0].update(settings_)
        _expect_documented("empirical.NormalizedSGDM.step", optimizer.step, names)
    else:
        state = optimizer.state_dict()
        state["param_groups"][0].update(settings_)
        _expect_documented("empirical.NormalizedSGDM.load", lambda: optimizer.load_state_dict(state), names)
    for p in model.parameters():
        assert torch.all(torch.isfinite(p)), "a bad hyper-parameter reached the parameters"


# ------------------------------------------------------------------------------------------ mvm

CLI_TOKENS = [
    "derive", "verify", "figures", "train", "bounds", "forms", "series", "stability", "transition", "stationary",
    "--latex", "--order", "--form", "--quick", "--json", "--markdown", "--only", "--mutants", "--jobs", "--out",
    "--cache", "--device", "--data", "--list", "--gallery", "--seed", "--resume", "--budget", "--no-progress",
    "--recompute", "--quiet", "-h", "0", "-1", "3", "9", "60", "1e3", "nan", "cuda", "cpu", "svag", "lemma_2_4",
    "imagenet=/nonexistent", "a=", "=b", "FILE", "DIR", "FILE/below", "new/out.json", "CONFIG", "", "\x00", "é",
]  # fmt: skip


def _stubbed_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace every expensive call of the CLI by a stub: what remains is parsing, validation and the exits."""
    import empirical.experiment
    import mvm.cli
    import paper_figures
    import proofs_check
    import proofs_check.bounds

    monkeypatch.setattr(proofs_check, "run_all", lambda **_: [])
    monkeypatch.setattr(proofs_check, "kill_matrix", lambda **_: types.SimpleNamespace(results={}, all_killed=True))
    monkeypatch.setattr(proofs_check, "format_kill_matrix", lambda *_a, **_k: "")
    monkeypatch.setattr(paper_figures, "build_figures", lambda *_a, **_k: None)
    monkeypatch.setattr(empirical.experiment, "run_experiment", lambda *_a, **_k: [])
    monkeypatch.setattr(proofs_check.bounds, "search_bounds", lambda **_: [])
    stub_topics = {name: (text, lambda latex, **_: "derived") for name, (text, _) in mvm.cli.DERIVE_TOPICS.items()}
    monkeypatch.setattr(mvm.cli, "DERIVE_TOPICS", stub_topics)


@pytest.fixture(scope="module")
def cli_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_fuzz")
    (root / "FILE").write_text("x")
    (root / "DIR").mkdir()
    (root / "CONFIG").write_text((Path(__file__).resolve().parents[1] / "configs" / "digits_mlp_sgdm.toml").read_text())
    return root


OPTION_VALUES = {
    "--json": ["DIR", "FILE/below", "new/out.json", "FILE"],
    "--markdown": ["DIR", "FILE/below", "new/out.md"],
    "--out": ["FILE", "FILE/below", "DIR", "new"],
    "--cache": ["FILE", "DIR"],
    "--order": ["0", "3", "9", "60", "x"],
    "--only": ["svag", "lemma_2_4", "nope", "fig1_batch_sweep", "svag.sum"],
    "--seed": ["-1", "0", "x"],
    "--budget": ["0", "5"],
    "--jobs": ["0", "2"],
}


COMMAND_OPTIONS = {
    "derive": {"--order"},
    "verify": {"--json", "--markdown", "--only", "--jobs"},
    "figures": {"--out", "--cache", "--only"},
    "train": {"--out", "--seed"},
    "bounds": {"--json", "--only", "--seed", "--budget"},
}


@st.composite
def cli_argv(draw) -> list[str]:
    """Half the time a command with options and plausible values (reaching validation and exit 3), else noise."""
    if draw(st.booleans()):
        return draw(st.lists(st.one_of(st.sampled_from(CLI_TOKENS), st.text(max_size=6)), max_size=7))
    command = draw(st.sampled_from(["derive", "verify", "figures", "train", "bounds"]))
    argv = [command]
    if command == "derive":
        argv.append(draw(st.sampled_from(["forms", "series", "stability", "transition", "stationary", "x"])))
    if command == "train":
        argv.append(draw(st.sampled_from(["CONFIG", "DIR", "FILE", "missing.toml"])))
    options = sorted(COMMAND_OPTIONS[command]) if draw(st.integers(0, 3)) else sorted(OPTION_VALUES)
    for option in draw(st.lists(st.sampled_from(options), max_size=3, unique=True)):
        argv += [option, draw(st.sampled_from(OPTION_VALUES[option]))]
    return argv


@FUZZ
@given(argv=cli_argv())
def test_fuzz_cli_argv(argv: list[str], cli_sandbox: Path) -> None:
    from mvm.cli import main

    with pytest.MonkeyPatch.context() as monkeypatch:
        _stubbed_cli(monkeypatch)
        monkeypatch.chdir(cli_sandbox)  # relative output paths land in the sandbox
        stderr, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
                code = exc.code
    err = stderr.getvalue()
    assert code in (0, 2, 3), f"mvm {argv}: exit {code}"
    assert "Traceback" not in err
    lines = [line for line in err.split("\n") if line and not line.startswith(("usage:", " "))]
    assert len(lines) <= 1, f"mvm {argv}: more than one error line: {err}"
    TALLY["mvm argv", f"exit {code}"] += 1
