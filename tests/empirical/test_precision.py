"""Mixed precision and fast kernels (issue 14, item 2): ``train.precision``, ``train.channels_last``,
``train.compile``, the foreach form of eq. (3), and the result keys that must not move."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import pytest
import torch

from empirical.config import config_from_dict, expand_grid, load_config, tomllib
from empirical.optim import NormalizedSGDM, normalized_sgdm_update_
from empirical.precision import CompileUnavailableError
from empirical.records import ResultStore, config_key
from empirical.run import CHECKPOINT_NAME, prepare_dataset
from empirical.train import _Run, train_run

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
MLP = {"name": "mlp", "hidden": [64]}
CNN = {"name": "small_cnn", "width": 8, "hidden": 32}


def _document(model: dict, steps: int = 100, **train: object) -> dict:
    return {
        "name": "precision",
        "seed": 0,
        "data": {"name": "digits"},
        "model": dict(model),
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        "train": {
            "batch_size": 32,
            "unit": "step",
            "length": steps,
            "eval_every": steps,
            "log_every": 20,
            "eval_train_samples": 0,
            **train,
        },
    }


def _run(tmp_path: Path, model: dict, steps: int = 100, **train: object) -> tuple[float, dict]:
    config = config_from_dict(_document(model, steps, **train))
    # one store per setting: channels_last and compile are not part of the key, a shared store would reuse a record
    label = ",".join(f"{name}={value}" for name, value in sorted(train.items())) or "default"
    result = train_run(config, out=tmp_path / f"{model['name']}-{steps}-{label}", quiet=True)
    assert result.status == "completed", result.metrics["warning"]
    record = ResultStore(result.path.parent).load(result.key)
    assert record is not None
    return result.metrics["final_train_loss"], record.info


# ------------------------------------------------------------------------------------------ result keys

#: Computed by the code BEFORE train.precision existed (main at 6060019): for each shipped config, the sha256
#: (first 20 hex digits) of the space-joined result keys of the config and of its grid members, and for each
#: paper figure with training runs, at each scale, of its members' keys (with ":count" appended); that is,
#: ``_shipped_keys()`` below run with ``PYTHONPATH`` pointing at that commit.
PINNED_KEYS = {
    "configs/cifar10_resnet32_svag.toml": "09e27c2c0c18f4f1fae3:9",
    "configs/digits_mlp_sgdm.toml": "ecd4565522380cad9f4b:2",
    "configs/fashion_mnist_cnn_sgdm.toml": "84c1f57113c816d06e86:2",
    "configs/fashion_mnist_svag.toml": "b5af51a9170ea5d6f3e2:9",
    "configs/imagenet_resnet50_b1024.toml": "0c4493e1d8034da3f3a0:3",
    "configs/mnist1d_mlp_grid.toml": "a5805d24e87eb5c98fc2:13",
    "configs/review_snippets_minilm.toml": "6f0f68b1254842afa2b2:3",
    "configs/roberta_large_sst2_fewshot.toml": "8d3f6ee067c55a906ba3:11",
    "fig1_batch_sweep@tiny": "19cced4c3faad9f7b0e2:16",
    "fig1_batch_sweep@quick": "7744f2b9d0ad0991dd62:160",
    "fig1_batch_sweep@full": "f1fc83242db33bbd8700:36",
    "fig2_svag@tiny": "8be720b6291b5a830619:8",
    "fig2_svag@quick": "96a8a279c8605bd37eaa:40",
    "fig2_svag@full": "fe50f30e2cac8efd4183:24",
    "table_lm_finetune@tiny": "0a76456359058d5ee2b8:12",
    "table_lm_finetune@quick": "7977442d27ccca116d39:16",
    "table_lm_finetune@full": "96540b0a7ac2dd0455a8:150",
}
#: The one member of configs/digits_mlp_sgdm.toml, and the same run with ``train.amp_bf16 = true``, keyed by the
#: code before this change (``config_key(member.identity())`` at 6060019).
DIGITS_KEY, DIGITS_AMP_BF16_KEY = "f6040ba2c643531ddb11", "84d3d868b65dcbf9672e"


def _digest(keys: list[str]) -> str:
    return hashlib.sha256(" ".join(keys).encode()).hexdigest()[:20] + f":{len(keys)}"


def _shipped_keys() -> dict[str, str]:
    from paper_figures.registry import DATA_NAMES, SCALES, FigureContext, available_figures, get_figure

    found = {}
    for path in sorted((ROOT / "configs").glob("*.toml")):
        config = load_config(path)
        found[f"configs/{path.name}"] = _digest(
            [config_key(config.identity())] + [config_key(m.identity()) for m in expand_grid(config)]
        )
    data = {name: f"/data/{name}" for name in DATA_NAMES}
    for figure_id in available_figures():
        spec = get_figure(figure_id)
        if spec.members is not None:
            for scale in SCALES:
                members = spec.members(spec.settings(FigureContext(scale=scale, data=data)))
                found[f"{figure_id}@{scale}"] = _digest([config_key(m.identity()) for m in members])
    return found


def test_keys_of_shipped_configs_and_figure_runs_are_unchanged() -> None:
    assert _shipped_keys() == PINNED_KEYS


def test_precision_spellings_and_kernel_switches_keep_or_make_keys() -> None:
    member = expand_grid(load_config(ROOT / "configs" / "digits_mlp_sgdm.toml"))[0]

    def key(**train: object) -> str:
        return config_key(dataclasses.replace(member, train=dataclasses.replace(member.train, **train)).identity())

    assert key() == key(precision="fp32") == key(channels_last=True, compile=True) == DIGITS_KEY
    assert key(precision="bf16") == key(precision="bf16", compile=True) == DIGITS_AMP_BF16_KEY
    assert key(precision="fp16") not in (DIGITS_KEY, DIGITS_AMP_BF16_KEY)
    old = config_from_dict(_document(MLP, amp_bf16=True))
    assert old.train.precision == "bf16" and old.train.amp_bf16
    bf16 = config_from_dict(_document(MLP, precision="bf16"))
    assert old.identity() == bf16.identity()
    fp16 = config_from_dict(_document(MLP, precision="fp16"))
    assert type(fp16).from_identity(fp16.identity()).train == fp16.train  # records and checkpoints read it back
    # a grid over precision replaces a base spelt amp_bf16
    grid = config_from_dict({**_document(MLP, amp_bf16=True), "grid": {"train.precision": ["fp32", "fp16"]}})
    assert [m.train.precision for m in expand_grid(grid)] == ["fp32", "fp16"]


def test_amp_bf16_is_derived_from_precision_and_replace_cannot_carry_it_over() -> None:
    """``amp_bf16 == (precision == "bf16")`` after every construction: replacing the precision of a config spelt
    ``amp_bf16 = true`` gives that precision (it used to come back bf16); the alias is read from config files and
    dicts only."""
    member = expand_grid(load_config(ROOT / "configs" / "digits_mlp_sgdm.toml"))[0]
    document = tomllib.loads((ROOT / "configs" / "digits_mlp_sgdm.toml").read_text())
    document["train"]["amp_bf16"] = True
    old = expand_grid(config_from_dict(document))[0]
    assert old.train.precision == "bf16" and old.train.amp_bf16
    assert config_key(old.identity()) == DIGITS_AMP_BF16_KEY  # the alias read from a dict keeps its key
    for precision in ("fp32", "fp16", "bf16"):
        train = dataclasses.replace(old.train, precision=precision)
        assert train.precision == precision and train.amp_bf16 == (precision == "bf16")
    fp32 = dataclasses.replace(old, train=dataclasses.replace(old.train, precision="fp32"))
    assert config_key(fp32.identity()) == DIGITS_KEY
    with pytest.raises(ValueError, match="amp_bf16"):  # derived: not an argument of the constructor or replace
        dataclasses.replace(member.train, amp_bf16=True)
    assert type(old).from_identity(old.identity()).train == old.train  # a stored identity names amp_bf16


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"precision": "fp8"}, "train.precision"),
        ({"precision": "fp16", "dtype": "float64"}, "train.precision = 'fp16' needs train.dtype = 'float32'"),
        ({"precision": "bf16", "dtype": "float64"}, "train.precision = 'bf16' needs train.dtype"),
        ({"amp_bf16": True, "precision": "fp16"}, "train.amp_bf16 = true .* contradicts train.precision"),
        ({"channels_last": 1}, "train.channels_last"),
        ({"compile": "yes"}, "train.compile"),
    ],
)
def test_config_errors_name_the_key_on_one_line(train: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        config_from_dict(_document(MLP, **train))
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------------ precision


def _record_logit_dtypes(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[torch.dtype]]:
    """The dtypes of the model's outputs (logits) in training calls and in evaluation calls of every run built
    from here on: the proof that a run did compute in its precision (closeness to fp32 alone would not tell a
    silently disabled autocast apart)."""
    import empirical.train

    seen: dict[str, set[torch.dtype]] = {"train": set(), "evaluate": set()}
    build = empirical.train.build_model

    def record(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
        seen["train" if module.training and torch.is_grad_enabled() else "evaluate"].add(output.dtype)

    def build_and_watch(*args: object, **kwargs: object) -> torch.nn.Module:
        model = build(*args, **kwargs)
        model.register_forward_hook(record)
        return model

    monkeypatch.setattr(empirical.train, "build_model", build_and_watch)
    return seen


@pytest.mark.parametrize("model", [MLP, CNN], ids=["mlp", "small_cnn"])
def test_bf16_and_fp16_stay_close_to_fp32(tmp_path: Path, model: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 steps of normalized SGDM on digits in fp32, bf16 and fp16 (scaler): final train losses agree.

    Tolerance, fixed before measuring: bf16 keeps 8 significant bits, unit roundoff u = 2^-8 ~ 0.4% (fp16: 2^-11).
    Weights and activations are rounded to it in every layer, so a logit z carries an error of a few u |z|; the
    loss moves by sum (p - y) dz, and |p - y| ~ L, so its relative error is about the absolute logit error, a
    few u * |z| ~ a few percent at worst (|z| up to ~5 here) before averaging over examples and over the
    random signs of the roundings (which shrinks it a lot); the gradient's rounding perturbs the trajectory
    by a similar relative amount per step.  Allowed: 5% relative.  Measured (torch 2.13 CPU): MLP bf16 2.7e-5,
    fp16 5.5e-5; small CNN bf16 5.1e-3, fp16 2.0e-3 (the averaging is strong: far inside the bound).
    """
    seen = _record_logit_dtypes(monkeypatch)
    fp32, info32 = _run(tmp_path, model)
    assert info32["precision"] == "fp32" and "loss_scale" not in info32
    assert seen == {"train": {torch.float32}, "evaluate": {torch.float32}}
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        seen["train"].clear(), seen["evaluate"].clear()
        loss, info = _run(tmp_path, model, precision=precision)
        assert info["precision"] == precision and not info["channels_last"] and not info["compile"]
        # the training steps and the evaluations (step 0 and the last) both ran in the 16-bit dtype
        assert seen == {"train": {dtype}, "evaluate": {dtype}}, (precision, seen)
        assert loss != fp32 and abs(loss - fp32) <= 0.05 * fp32, (precision, loss, fp32)
    assert info["loss_scale"] > 0  # fp16 keeps its scaler's final scale in the record


def test_fp16_skipped_step_is_not_divergence_but_a_nonfinite_loss_is(tmp_path: Path) -> None:
    """The scaler starts at 2^16 and skips the steps whose scaled gradients overflow fp16; the run completes."""
    config = config_from_dict(_document(CNN, steps=20, precision="fp16"))
    run = _Run(config, prepare_dataset(config, torch.device("cpu")), torch.device("cpu"), quiet=True)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)  # the first steps overflow fp16: skipped
    before = [p.detach().clone() for p in run.model.parameters()]
    assert run.train(None) is None
    assert run.scaler.get_scale() < 2.0**24  # lowered by each skipped step
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))
    # a non-finite loss still stops the run
    diverged = config_from_dict(
        {**_document(MLP, steps=40, precision="fp16"), "optimizer": {"name": "sgd", "eta": 1e4}}
    )
    result = train_run(diverged, out=tmp_path, quiet=True)
    assert result.status == "diverged" and result.metrics["diverged_at_step"] is not None


class _Stop(Exception):
    """Stands for the run being killed right after a checkpoint."""


def test_fp16_run_resumes_bitwise_with_its_gradient_scaler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fp16 run stopped after its checkpoint at step 10 and resumed ends bitwise where the uninterrupted run
    does, the scaler's scale included.  The scaler starts at 2^24 here, so the first steps overflow and lower it
    before the checkpoint: a resumed run that did not restore it would start at 2^24 again and skip more steps."""
    import empirical.train

    monkeypatch.setattr(
        empirical.train, "make_scaler", lambda device_type, precision: torch.amp.GradScaler("cpu", init_scale=2.0**24)
    )
    config = config_from_dict(_document(CNN, steps=20, precision="fp16", checkpoint_every=10, log_every=5))
    dataset, cpu = prepare_dataset(config, torch.device("cpu")), torch.device("cpu")

    reference = _Run(config, dataset, cpu, quiet=True)
    assert reference.train(tmp_path / "reference" / CHECKPOINT_NAME) is None

    folder = tmp_path / "stopped"
    stopped = _Run(config, dataset, cpu, quiet=True)
    save = stopped.save_checkpoint

    def save_then_stop(path: Path) -> None:
        save(path)
        raise _Stop

    stopped.save_checkpoint = save_then_stop  # type: ignore[method-assign]
    with pytest.raises(_Stop):
        stopped.train(folder / CHECKPOINT_NAME)
    assert stopped.scaler is not None and stopped.scaler.get_scale() < 2.0**24  # skipped steps lowered it

    resumed = _Run(config, dataset, cpu, quiet=True)
    assert resumed.load_checkpoint(folder) and resumed.progress.step == 10
    assert resumed.train(folder / CHECKPOINT_NAME) is None
    for mine, theirs in zip(resumed.model.parameters(), reference.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert resumed.scaler.get_scale() == reference.scaler.get_scale()  # type: ignore[union-attr]
    assert resumed.progress.curves[-1]["train_loss"] == reference.progress.curves[-1]["train_loss"]


# ------------------------------------------------------------------------------------------ kernels


def test_channels_last_gives_the_loss_of_contiguous_to_float32_rounding(tmp_path: Path) -> None:
    """Measured: 1.114169888768309 vs 1.1141699099905467 after 100 steps (relative 1.9e-8)."""
    contiguous, _ = _run(tmp_path, CNN)
    nhwc, info = _run(tmp_path, CNN, channels_last=True)
    assert info["channels_last"] and nhwc == pytest.approx(contiguous, rel=1e-5)


def test_channels_last_on_a_model_without_convolutions_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train\.channels_last = true needs a convolutional model"):
        _run(tmp_path, MLP, steps=10, channels_last=True)


@pytest.mark.parametrize("where", ["torch.compile", "first call"])
def test_compile_unavailable_is_a_one_line_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Simulated: torch.compile refusing this Python, or dynamo failing when the first call compiles."""
    import torch._dynamo.exc as dynamo_exc

    def refuse(model: torch.nn.Module) -> object:
        raise RuntimeError("Python 3.99+ not yet supported for torch.compile")

    def fails_at_first_call(model: torch.nn.Module) -> object:
        def call(*args: object, **kwargs: object) -> object:
            raise dynamo_exc.InternalTorchDynamoError("InvalidCxxCompiler: No working C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", refuse if where == "torch.compile" else fails_at_first_call)
    with pytest.raises(CompileUnavailableError, match=r"set train\.compile = false") as caught:
        _run(tmp_path, CNN, steps=10, compile=True)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("stage", ["training call", "backward pass"])
def test_compile_failing_after_the_step0_evaluation_is_a_one_line_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """The first call of the compiled model is the step-0 evaluation (no gradients), which compiles another graph
    than training: a compiler failure at the first training call, or at the first backward pass (where the
    backward graph is compiled), gets the one-line message too."""
    import torch._dynamo.exc as dynamo_exc

    failure = "InvalidCxxCompiler: No working C++ compiler found\nsecond line"

    class FailingBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
            raise dynamo_exc.InternalTorchDynamoError(failure)

    def compiles_evaluation_only(model: torch.nn.Module) -> object:
        def call(*args: object, **kwargs: object) -> object:
            if model.training and torch.is_grad_enabled():
                if stage == "training call":
                    raise dynamo_exc.InternalTorchDynamoError(failure)
                return FailingBackward.apply(model(*args, **kwargs))
            return model(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "compile", compiles_evaluation_only)
    with pytest.raises(CompileUnavailableError, match=rf"first {stage} .*set train\.compile = false") as caught:
        _run(tmp_path, CNN, steps=10, compile=True)
    assert "\n" not in str(caught.value)


class _Budget(BaseException):
    """Like bench.gpu_check.SectionTimeout: an interruption, not an error."""


@pytest.mark.parametrize("link", ["__cause__", "__context__", "deeper"])
def test_an_interruption_wrapped_by_the_compiler_is_reraised_not_compile_unavailable(
    monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    """dynamo wraps what a backend raises (``BackendCompilerFailed(...) from exc``): a non-``Exception`` anywhere
    in the cause/context chain (a time budget, ``KeyboardInterrupt``) comes out as itself."""
    import torch._dynamo.exc as dynamo_exc

    from empirical.precision import compile_model

    interruption = _Budget("budget of 3 s exhausted")

    def wrapped(model: torch.nn.Module) -> object:
        def call(*args: object, **kwargs: object) -> object:
            error = dynamo_exc.InternalTorchDynamoError("backend failed")
            middle = RuntimeError("in between")
            if link == "deeper":
                middle.__cause__ = interruption
                error.__context__ = middle
            else:
                setattr(error, link, interruption)
            raise error

        return call

    monkeypatch.setattr(torch, "compile", wrapped)
    forward = compile_model(torch.nn.Linear(2, 2))
    with pytest.raises(_Budget) as caught:
        forward(torch.zeros(1, 2))
    assert caught.value is interruption


def _eager_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile with dynamo's eager backend: traces the model for real but needs no C++ compiler."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


def test_compiled_run_checkpoints_the_uncompiled_module_and_resumes_uncompiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _eager_compile(monkeypatch)
    torch._dynamo.reset()
    document = _document(CNN, steps=20, compile=True, checkpoint_every=10)
    compiled = config_from_dict(document)
    result = train_run(compiled, out=tmp_path, quiet=True)
    record = ResultStore(tmp_path).load(result.key)
    assert record is not None and record.info["compile"]
    state = torch.load(result.path / CHECKPOINT_NAME, weights_only=True)
    assert state["model"] and not any("_orig_mod" in name for name in state["model"])
    plain = config_from_dict({**document, "train": {**document["train"], "compile": False}})
    assert config_key(plain.identity()) == result.key  # the same run, so the same folder
    run = _Run(plain, prepare_dataset(plain, torch.device("cpu")), torch.device("cpu"), quiet=True)
    assert run.load_checkpoint(result.path) and run.progress.step == 20
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, state["model"][name])
    # and back: an uncompiled run's checkpoint loads into a compiled run
    again = _Run(compiled, prepare_dataset(compiled, torch.device("cpu")), torch.device("cpu"), quiet=True)
    assert again.load_checkpoint(result.path) and again.progress.step == 20


@pytest.mark.slow
def test_real_compile_on_cpu_matches_eager(tmp_path: Path) -> None:
    """torch.compile with its default (inductor) backend on the CPU: the loss of the uncompiled run to 1e-4."""
    torch._dynamo.reset()
    plain, _ = _run(tmp_path / "plain", CNN, steps=40)
    compiled, info = _run(tmp_path / "compiled", CNN, steps=40, compile=True)
    assert info["compile"] and compiled == pytest.approx(plain, rel=1e-4)


# ------------------------------------------------------------------------------------------ foreach form


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("beta", "nesterov"), [(0.9, True), (0.9, False), (0.0, False)])
def test_foreach_and_reference_forms_are_bitwise_equal(dtype: torch.dtype, beta: float, nesterov: bool) -> None:
    """100 steps of eq. (3) with weight decay: the ``_foreach`` form and the per-tensor loop agree bit for bit on
    the CPU (the foreach ops run the loop's kernels there); default ``foreach=None`` is the foreach form."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 2, 4), ()]
    start = [torch.randn(shape, generator=generator, dtype=dtype) for shape in shapes]
    grads = [[torch.randn(shape, generator=generator, dtype=dtype) for shape in shapes] for _ in range(100)]
    finals = []
    for foreach in (True, False, None):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = NormalizedSGDM(
            params, lr=0.05, momentum=beta, weight_decay=1e-3, nesterov=nesterov, foreach=foreach
        )
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        finals.append([p.detach() for p in params])
    for other in finals[1:]:
        assert all(torch.equal(a, b) for a, b in zip(finals[0], other, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(finals[0], start, strict=True))


def test_reference_form_checks_its_buffers() -> None:
    with pytest.raises(ValueError, match="momentum buffer"):
        normalized_sgdm_update_([torch.zeros(2)], [torch.ones(2)], None, lr=0.1, momentum=0.9, foreach=False)
    with pytest.raises(ValueError, match="foreach"):
        NormalizedSGDM([torch.zeros(2, requires_grad=True)], lr=0.1, foreach=1)  # type: ignore[arg-type]
