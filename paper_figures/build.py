"""``mvm figures``: compute (or reuse) every figure's data, plot it, write PNG + PDF and ``manifest.json``.

Each figure's computed data is a record of the figure store (``CACHE/figures``), keyed by the figure ID,
its version and its settings; empirical figures' training runs are records of the run store
(``CACHE/runs``), keyed by run config, shared between figures.  A figure record names the SHA-256 of
every run record it was computed from, so a cached figure is reused only while all of them are intact;
a corrupted or partial entry of either store is detected, discarded and recomputed (said on stderr), never
plotted: each record's digest covers its values and every file it stands for (:mod:`empirical.records`).  A
figure is computed holding its entry's lock, so two builds on one cache never compute it twice: the second waits
and reuses the first one's record.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirical.records import CorruptRecordError, Record, ResultStore, atomic_write_bytes, config_key, environment_info
from paper_figures.registry import Computed, FigureContext, FigureSpec, default_figures, get_figure, plain
from paper_figures.runs import discard_corrupt_entries, record_digest
from paper_figures.style import figure_style

__all__ = ["MANIFEST_NAME", "FigureOutcome", "build_figures", "figure_cache_key", "write_gallery"]

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FigureOutcome:
    """One figure of a build: files written, provenance, whether it was computed now, timings, summary."""

    figure_id: str
    title: str
    kind: str
    files: tuple[Path, ...]
    settings: dict[str, Any]
    configs: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...]
    records: tuple[dict[str, str], ...]
    computed: bool
    compute_wall_time_s: float
    plot_wall_time_s: float
    wall_time_s: float
    summary: dict[str, Any] = field(default_factory=dict)

    def manifest_entry(self, out: Path) -> dict[str, Any]:
        return {
            "id": self.figure_id,
            "title": self.title,
            "kind": self.kind,
            "files": [str(path.relative_to(out)) for path in self.files],
            "settings": self.settings,
            "configs": list(self.configs),
            "seeds": list(self.seeds),
            "records": list(self.records),
            "computed": self.computed,
            "compute_wall_time_s": self.compute_wall_time_s,
            "plot_wall_time_s": self.plot_wall_time_s,
            "wall_time_s": self.wall_time_s,
            "summary": self.summary,
        }


def figure_cache_key(spec: FigureSpec, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The config under which a figure's computed data is stored."""
    return {"figure": spec.figure_id, "version": spec.version, "settings": plain(dict(settings))}


def _log(context: FigureContext, message: str) -> None:
    if context.progress:
        print(message, file=sys.stderr, flush=True)


def _say(message: str) -> None:
    """Always on screen: a cached result is not used (integrity is never silent)."""
    print(message, file=sys.stderr, flush=True)


def _cached(store: ResultStore, key_config: dict[str, Any], runs: ResultStore) -> Record | None:
    """The figure's record if it is intact and every run record it was computed from is unchanged.

    The caller holds the figure's lock.  Run entries are only checked here; a damaged one is discarded and
    retrained under its own lock when the figure is computed again.
    """
    discard_corrupt_entries(store, [key_config])
    record = store.load(key_config)
    if record is None or record.status != "completed":
        return None
    figure = key_config["figure"]
    try:
        if not isinstance(record.metrics.get("data"), dict):
            raise CorruptRecordError(f"{record.path}: no figure data")
        for run in record.info.get("runs", []):
            if runs.load(run["key"]) is None or record_digest(runs, run["key"]) != run["sha256"]:
                _say(f"{figure}: run record {run['key']} changed or is missing; recomputing the figure")
                return None
    except (CorruptRecordError, KeyError, TypeError) as exc:
        _say(f"{figure}: cached data refers to a damaged entry ({exc}); recomputing the figure")
        return None
    return record


def _compute(spec: FigureSpec, settings: dict[str, Any], context: FigureContext) -> tuple[Computed, float]:
    started = time.perf_counter()
    computed = spec.compute(settings, context)
    return computed, time.perf_counter() - started


def _cached_or_computed(
    spec: FigureSpec,
    settings: dict[str, Any],
    key_config: dict[str, Any],
    store: ResultStore,
    runs: ResultStore,
    context: FigureContext,
    recompute: bool,
) -> tuple[Record, bool]:
    """The figure's intact cached record, else a new one computed now (the caller holds the figure's lock)."""
    record = None if recompute else _cached(store, key_config, runs)
    if record is not None:
        _log(context, f"{spec.figure_id}: cached data (computed in {record.info.get('wall_time_s', 0):.1f} s)")
        return record, False
    _log(context, f"{spec.figure_id}: computing ({context.scale} scale)")
    computed, compute_wall = _compute(spec, settings, context)
    run_keys = [config_key(identity) for identity in computed.runs]
    run_records = []
    for key in run_keys:
        digest = record_digest(runs, key)
        if digest is None:
            raise RuntimeError(f"{spec.figure_id}: compute named run {key} but the run store has no record of it")
        run_records.append({"key": key, "sha256": digest})
    record = store.save(
        key_config,
        status="completed",
        metrics={"data": plain(computed.data)},
        info={
            "runs": run_records,
            "run_configs": plain(list(computed.runs)),
            "seeds": sorted(set(computed.seeds)),
            "wall_time_s": compute_wall,
        },
    )
    return record, True


def _build_one(spec: FigureSpec, context: FigureContext, out: Path, recompute: bool) -> FigureOutcome:
    started = time.perf_counter()
    store, runs = ResultStore(context.figures_dir), ResultStore(context.runs_dir)
    settings = plain(spec.settings(context))
    key_config = figure_cache_key(spec, settings)
    with store.lock(key_config):
        record, computed_now = _cached_or_computed(spec, settings, key_config, store, runs, context, recompute)
    data = record.metrics["data"]
    plot_started = time.perf_counter()
    with figure_style():
        files = tuple(spec.plot(data, out / spec.figure_id))
    plot_wall = time.perf_counter() - plot_started
    missing = [str(path) for path in files if not path.exists() or path.stat().st_size == 0]
    if missing:
        raise RuntimeError(f"{spec.figure_id}: plot did not write {missing}")
    figure_record = {
        "store": "figures",
        "key": record.key,
        "sha256": record_digest(store, record.key) or "",
    }
    run_records = [{"store": "runs", **run} for run in record.info.get("runs", [])]
    return FigureOutcome(
        figure_id=spec.figure_id,
        title=spec.title,
        kind=spec.kind,
        files=files,
        settings=settings,
        configs=tuple(record.info.get("run_configs") or [settings]),
        seeds=tuple(record.info.get("seeds", [])),
        records=tuple([figure_record, *run_records]),
        computed=computed_now,
        compute_wall_time_s=float(record.info.get("wall_time_s", 0.0)),
        plot_wall_time_s=plot_wall,
        wall_time_s=time.perf_counter() - started,
        summary=dict(data.get("summary", {})) if isinstance(data, Mapping) else {},
    )


def build_figures(
    only: Sequence[str] | None = None,
    *,
    scale: str = "quick",
    out: str | Path = "results/figures",
    cache_dir: str | Path = "results/cache",
    device: str = "cpu",
    data: Mapping[str, str] | None = None,
    progress: bool = True,
    recompute: bool = False,
    gallery: str | Path | None = None,
    on_figure: Callable[[FigureOutcome], None] | None = None,
) -> list[FigureOutcome]:
    """Build the figures ``only`` (default: all but the on-demand ones, in catalogue order) into ``out``.

    Writes ``manifest.json`` there.

    ``scale`` is ``"quick"`` (CPU defaults), ``"full"`` (paper scale) or ``"tiny"`` (seconds; tests).

    ``recompute`` ignores cached figure data (training runs are still reused from the run store);
    ``gallery`` also writes small PNG copies there (the README's gallery); ``on_figure`` is called with
    each finished figure.  Unknown IDs are a ``ValueError`` before anything runs.
    """
    ids = ([only] if isinstance(only, str) else list(only)) if only else default_figures()
    specs = [get_figure(figure_id) for figure_id in ids]
    context = FigureContext(scale=scale, device=device, cache_dir=Path(cache_dir), data=data or {}, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    outcomes = []
    for spec in specs:
        outcome = _build_one(spec, context, out, recompute)
        outcomes.append(outcome)
        if on_figure is not None:
            on_figure(outcome)
    if gallery is not None:
        write_gallery(outcomes, Path(gallery))
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scale": scale,
        "device": device,
        "cache_dir": str(context.cache_dir),
        "environment": environment_info(),
        "wall_time_s": time.perf_counter() - started,
        "figures": [outcome.manifest_entry(out) for outcome in outcomes],
    }
    atomic_write_bytes(out / MANIFEST_NAME, (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode())
    return outcomes


def write_gallery(outcomes: Sequence[FigureOutcome], folder: Path, width: int = 900) -> list[Path]:
    """Copies of every PNG at most ``width`` pixels wide in a 128-colour palette (small enough to commit)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for outcome in outcomes:
        for path in outcome.files:
            if path.suffix != ".png":
                continue
            target = folder / path.name
            with Image.open(path) as image:
                if image.width > width:
                    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
                # line art survives an adaptive palette; it makes the file about three times smaller
                image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
            written.append(target)
    return written
