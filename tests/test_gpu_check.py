"""``make gpu-check`` (bench/gpu_check.py) on a machine without a GPU: the tiny CPU mode runs every section's code,
writes a complete JSON report, skips what is missing, and the plain command says there is no CUDA and exits 0."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("gpu-check") / "results" / "gpu_check.json"
    report = gpu_check.run_check("cpu", tiny=True, out=out)
    return report, out


def test_tiny_cpu_mode_writes_the_whole_report(tiny_report: tuple[dict[str, Any], Path]) -> None:
    report, out = tiny_report
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # the atomic write left no temporary file
    for key in ("schema", "created", "mode", "device", "device_name", "torch", "cuda", "python", "total_seconds"):
        assert key in report, key
    assert report["mode"] == "tiny" and report["device"] == "cpu" and report["torch"] == torch.__version__
    sections = report["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    for name, section in sections.items():
        assert section["status"] in ("ok", "skipped"), (name, section)
        assert 0 <= section["seconds"] <= section["budget_s"] + 5
    optimizer = sections["optimizer"]["rows"]
    assert optimizer["fixed_gradients_float64"] == 0.0 and optimizer["quadratic_float64"] == 0.0  # CPU vs CPU
    assert 0 < optimizer["fixed_gradients_float32_vs_cpu_float64"] < 1e-4
    assert sections["optimizer"]["flagged"] == []
    variants = sections["resnet32"]["variants"]
    for name in ("fp32", "bf16"):
        assert variants[name]["status"] == "ok"
        for key in ("ours_images_per_s", "bare_images_per_s"):
            assert variants[name][key] > 0
        assert variants[name]["overhead"] > -1
    features = set(report["train_config_features"])
    if "channels_last" in features:
        assert variants["bf16+channels_last"]["status"] == "ok"
    else:
        assert "not available in this version" in variants["bf16+channels_last"]["reason"]
    assert variants["bf16+channels_last+compile"]["status"] == "skipped"  # tiny mode compiles nothing
    assert sections["ensemble"]["speedup"] > 0 and sections["ensemble"]["members"] == 2
    assert sections["ddp"]["status"] == "skipped"
    projection = sections["projection"]
    assert set(projection["formula"]) >= {"figure2_train_images", "imagenet_member_train_images", "seconds"}
    assert projection["figure2"]["fp32"]["hours_one_gpu"] > 0
    assert projection["imagenet_member"]["hours_one_gpu"] > 0
    assert report["total_seconds"] > 0  # about 30 s on an idle 2-core machine


def test_table_names_every_measurement(tiny_report: tuple[dict[str, Any], Path], capsys: Any) -> None:
    gpu_check.print_table(tiny_report[0])
    text = capsys.readouterr().out
    for needle in ("optimizer fixed_gradients_float64", "resnet32 fp32", "overhead", "ensemble", "ddp", "figure 2"):
        assert needle in text, needle


def test_figure2_image_count_follows_the_svag_schedule() -> None:
    images = gpu_check.figure2_images()
    per_run_epoch = (50000 // 512) * 512  # one epoch of ell = 1
    # ell = 1: 1 batch per step; ell = 2, 4, 8: ell times the steps and two batches per step
    assert images["train_images"] == 2 * 3 * 160 * per_run_epoch * (1 + 2 * 2 + 4 * 2 + 8 * 2)
    assert images["eval_images"] == 2 * 3 * 4 * 161 * 20000
    assert gpu_check.projected_seconds({"train_images": 300.0, "eval_images": 300.0}, 100.0) == pytest.approx(4.0)


def test_a_missing_module_skips_its_section_with_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def failing_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "empirical.ensemble":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    monkeypatch.setattr(gpu_check, "SECTIONS", ("optimizer", "ensemble"))
    report = gpu_check.run_check("cpu", tiny=True, out=tmp_path / "gpu_check.json")
    assert report["sections"]["ensemble"] == {
        "status": "skipped",
        "reason": "missing module empirical.ensemble",
        "seconds": pytest.approx(report["sections"]["ensemble"]["seconds"]),
        "budget_s": gpu_check.TINY.budgets["ensemble"],
    }
    assert report["sections"]["optimizer"]["status"] == "ok"
    rows = gpu_check.table_rows(report)
    assert ("ensemble", "skipped", "missing module empirical.ensemble") in rows


def test_a_section_over_its_budget_stops_and_keeps_what_it_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    results: dict[str, Any] = {}
    sizes = gpu_check.TINY
    monkeypatch.setattr(gpu_check, "TINY", gpu_check.dataclasses.replace(sizes, budgets={**sizes.budgets, "ddp": 0.2}))
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.TINY, 0.0, results)

    def slow() -> None:
        results["first"] = 1.0
        while True:
            sum(range(1000))

    gpu_check._run_section("ddp", ctx, slow)
    assert results["status"] == "timeout" and results["first"] == 1.0 and results["seconds"] < 5


def test_a_failing_section_is_an_error_entry_not_a_crash() -> None:
    results: dict[str, Any] = {}
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.TINY, 0.0, results)

    def broken() -> None:
        raise RuntimeError("boom")

    gpu_check._run_section("optimizer", ctx, broken)
    assert results["status"] == "error" and "boom" in results["reason"] and "traceback" in results


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_plain_command_without_cuda_says_so_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(tmp_path / "gpu_check.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == gpu_check.NO_CUDA
    assert not (tmp_path / "gpu_check.json").exists()


def test_main_without_cuda_in_process(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.strip() == gpu_check.NO_CUDA
    assert gpu_check.main(["--device", "cpu"]) == 0
    assert gpu_check.NO_CUDA in capsys.readouterr().out


def test_variants_follow_the_train_config_fields() -> None:
    before = {name: overrides for name, overrides, _, _ in gpu_check._variants({"amp_bf16"})}
    assert before["fp32"] == {} and before["bf16"] == {"amp_bf16": True}
    assert before["bf16+channels_last"] is None and before["bf16+channels_last+compile"] is None
    after = {
        name: overrides for name, overrides, _, _ in gpu_check._variants({"precision", "channels_last", "compile"})
    }
    assert after["bf16"] == {"precision": "bf16"}
    assert after["bf16+channels_last+compile"] == {"precision": "bf16", "channels_last": True, "compile": True}


def test_a_variant_that_fails_to_compile_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no C++ compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", no_compiler)
    variant = ("bf16+channels_last+compile", {}, {"bf16": True, "channels_last": True, "compile": True}, "")
    monkeypatch.setattr(gpu_check, "_variants", lambda fields: [variant])
    results: dict[str, Any] = {}
    sizes = gpu_check.dataclasses.replace(gpu_check.TINY, compile=True)
    ctx = gpu_check.Context(torch.device("cpu"), sizes, gpu_check.time.perf_counter() + 60, results)
    gpu_check.section_resnet32(ctx)
    entry = results["variants"]["bf16+channels_last+compile"]
    assert entry == {"status": "skipped", "reason": "RuntimeError: no C++ compiler here"}
    assert results["variants"]["fp32+crop_flip"]["ours_images_per_s"] > 0  # the other measurements go on


@pytest.mark.skipif(not hasattr(gpu_check.signal, "setitimer"), reason="needs SIGALRM")
def test_a_budget_running_out_inside_torch_compile_is_a_timeout_not_a_skipped_variant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The section's alarm fires inside a torch.compile backend (dynamo wraps what the backend raises and
    empirical.precision turns compiler errors into "compile unavailable"): the section still ends ``timeout``."""
    import empirical.precision

    called = []

    def budget_runs_out(graph: torch.fx.GraphModule, example_inputs: Any) -> Any:
        called.append(True)
        gpu_check.signal.setitimer(gpu_check.signal.ITIMER_REAL, 0.01)  # the section's alarm, due now
        gpu_check.time.sleep(60)
        return graph.forward

    torch._dynamo.reset()
    monkeypatch.setattr(
        empirical.precision, "_torch_compile", lambda model: torch.compile(model, backend=budget_runs_out)
    )
    variant = ("bf16+channels_last+compile", {"compile": True}, {"compile": True}, "")
    monkeypatch.setattr(gpu_check, "_variants", lambda fields: [variant])
    results: dict[str, Any] = {}
    sizes = gpu_check.dataclasses.replace(gpu_check.TINY, compile=True)
    ctx = gpu_check.Context(torch.device("cpu"), sizes, gpu_check.time.perf_counter() + 240, results)
    try:
        gpu_check._run_section("resnet32", ctx, lambda: gpu_check.section_resnet32(ctx))
    finally:
        torch._dynamo.reset()
    assert called
    assert results["status"] == "timeout", results
    assert results["variants"]["bf16+channels_last+compile"]["status"] == "skipped"
    assert "fp32+crop_flip" not in results["variants"]  # the section stopped there
    assert results["seconds"] < 60


_FAKE_LAUNCHER = """
import os, sys, time
for _ in range(2):  # a worker in a session of its own (as torchrun may start them), and one below it
    if os.fork() != 0:
        break
    os.setsid()
with open(sys.argv[1], "a") as stream:
    stream.write(f"{os.getpid()}\\n")
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "fork"), reason="needs /proc and fork")
def test_ddp_timeout_kills_the_launcher_and_every_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A launcher that outlives the section's time: the section ends ``timeout`` and no process it started (also
    one in a session of its own, below another) survives to keep the GPUs busy."""
    pids = tmp_path / "pids"
    fake = [sys.executable, "-c", _FAKE_LAUNCHER, str(pids)]
    popen = subprocess.Popen
    monkeypatch.setattr(gpu_check.subprocess, "Popen", lambda command, **kwargs: popen(fake, **kwargs))
    results: dict[str, Any] = {}
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.TINY, gpu_check.time.perf_counter() + 6, results)
    try:
        gpu_check._run_section("ddp", ctx, lambda: gpu_check.section_ddp(ctx, cpu_backend="gloo"))
        started = [int(line) for line in pids.read_text().split()]
        assert len(started) == 3
        assert results["status"] == "timeout", results
        deadline = gpu_check.time.monotonic() + 10
        while any(_alive(pid) for pid in started) and gpu_check.time.monotonic() < deadline:
            gpu_check.time.sleep(0.05)
        assert not [pid for pid in started if _alive(pid)]
    finally:  # leave nothing behind, whatever failed
        for pid in [int(line) for line in pids.read_text().split()] if pids.exists() else []:
            with gpu_check.contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, gpu_check.signal.SIGKILL)


@pytest.mark.slow
def test_ddp_section_runs_two_gloo_processes_on_the_cpu() -> None:
    results: dict[str, Any] = {}
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.TINY, gpu_check.time.perf_counter() + 300, results)
    gpu_check.section_ddp(ctx, cpu_backend="gloo")
    assert results["backend"] == "gloo" and results["world_size"] == 2 and results["ratio"] > 0


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_gpu_check_prefers_the_venv_python_and_works_without_one(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    # a clean make: under `make test` the environment carries MAKELEVEL/MAKEFLAGS (nested make then prints
    # "Entering directory" lines and inherits command-line variables)
    inherited = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "GPU_PYTHON")
    env = {name: value for name, value in os.environ.items() if name not in inherited}

    def command(*variables: str) -> str:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "gpu-check", *variables],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return done.stdout.strip()

    assert command() == "PYTHONPATH=. python3 -m bench.gpu_check"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert command() == "PYTHONPATH=. .venv/bin/python -m bench.gpu_check"
    assert command("GPU_PYTHON=/opt/python") == "PYTHONPATH=. /opt/python -m bench.gpu_check"


def test_bare_loop_uses_our_optimizer_and_our_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The overhead compares loops, not optimizers or batch orders: the bare loop steps NormalizedSGDM with the
    settings of our loop's config, on the batches of our loop's EpochSampler (same seed, steps 0, 1, ...)."""
    import empirical.data
    import empirical.run
    from empirical.optim import NormalizedSGDM

    made: list[Any] = []
    make = empirical.run.make_optimizer
    monkeypatch.setattr(empirical.run, "make_optimizer", lambda *args: made.append(make(*args)) or made[-1])
    asked: list[tuple[int, int]] = []
    indices = empirical.data.EpochSampler.indices

    def record(sampler: Any, step: int) -> Any:
        asked.append((sampler.seed, step))
        return indices(sampler, step)

    monkeypatch.setattr(empirical.data.EpochSampler, "indices", record)
    sizes = gpu_check.TINY
    dataset = gpu_check._synthetic_images(sizes.batch * 4, sizes.side, 10, seed=1)
    ctx = gpu_check.Context(torch.device("cpu"), sizes, gpu_check.time.perf_counter() + 60, {})
    assert gpu_check._bare_per_step(ctx, "resnet32", dataset, {}, steps=2) > 0
    ours = gpu_check._run_config("resnet32", sizes.batch, 5, "cpu", {})
    (optimizer,) = made
    assert type(optimizer) is NormalizedSGDM
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (
        ours.optimizer.effective_lr,
        ours.optimizer.momentum,
        ours.optimizer.weight_decay,
    )
    assert asked == [(ours.seed, step) for step in range(5)]
