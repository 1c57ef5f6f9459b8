"""The catalogue of figures and tables: one :class:`FigureSpec` per ID, each split into compute and plot.

A figure module builds its spec and calls :func:`register`; :mod:`paper_figures.catalog` imports every
figure module, in the order ``mvm figures`` runs them (theory first: it is fast).  The spec's
``settings`` fully determine what ``compute`` returns, so they (with the spec's ``version``) key the
cached result; ``plot`` only draws cached data and never computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FIGURE_KINDS",
    "Computed",
    "FigureContext",
    "FigureSpec",
    "available_figures",
    "default_figures",
    "get_figure",
    "plain",
    "register",
]

FIGURE_KINDS = ("theory", "empirical", "table")
#: ``tiny``: seconds, for tests (empirical figures on fixture data); ``quick``: the CPU defaults (minutes on
#: 2 cores, offline data); ``full``: paper scale (empirical figures on a GPU with the user's local data).
SCALES = ("tiny", "quick", "full")
#: The names ``--data NAME=PATH`` accepts: every local dataset or model a figure can read.
DATA_NAMES = ("fashion_mnist", "review_snippets", "imagenet", "cifar10", "roberta-large", "lm-bff")


@dataclass(frozen=True)
class FigureContext:
    """How figures are built: scale, device, cache folder, local data paths and progress output.

    ``scale`` is one of :data:`SCALES`.  ``data`` maps a dataset or model name (``fashion_mnist``,
    ``imagenet``, ``cifar10``, ``roberta-large``, ...) to a local path (``mvm figures --data NAME=PATH``);
    paper-scale empirical figures need theirs, quick ones fall back to their loader's default location.
    """

    scale: str = "quick"
    device: str = "cpu"
    cache_dir: Path = Path("results/cache")
    data: Mapping[str, str] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        object.__setattr__(self, "data", dict(self.data))
        unknown = sorted(set(self.data) - set(DATA_NAMES))
        if unknown:  # a misspelt name would silently fall back to a default dataset
            raise ValueError(f"unknown data name(s) {unknown}; known: {', '.join(DATA_NAMES)}")

    @property
    def runs_dir(self) -> Path:
        """The store of training runs that empirical figures share (one record per run config)."""
        return self.cache_dir / "runs"

    @property
    def figures_dir(self) -> Path:
        """The store of computed figure data (one record per figure ID, version and settings)."""
        return self.cache_dir / "figures"

    def data_path(self, name: str, figure_id: str, what: str, default: str | None = None) -> str:
        """The local path given for ``name`` (else ``default``); a clear error naming the flag if neither."""
        if name not in DATA_NAMES:
            raise ValueError(f"{figure_id} reads data {name!r}, which is not in DATA_NAMES {DATA_NAMES}")
        if name not in self.data:
            if default is not None:
                return default
            raise ValueError(
                f"{figure_id} at paper scale needs {what}: pass --data {name}=PATH (or run it with --quick)"
            )
        return self.data[name]


@dataclass(frozen=True)
class Computed:
    """What ``compute`` returns: the JSON-able ``data`` that ``plot`` draws, and its provenance.

    ``runs`` are the identities (:meth:`empirical.config.RunConfig.identity`) of the training runs whose
    records the data came from, ``seeds`` every seed used; ``data["summary"]``, when present, is a short
    mapping of the headline numbers (copied into the manifest and printed by ``mvm figures``).
    """

    data: dict[str, Any]
    runs: tuple[dict[str, Any], ...] = ()
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class FigureSpec:
    """One figure or table.

    ``settings(context)`` returns the JSON-able parameters of the computation (they key the cache);
    ``compute(settings, context)`` runs it; ``plot(data, stem)`` writes ``stem.png`` and ``stem.pdf``
    (and, for tables, ``stem.md`` and ``stem.tex``) and returns the paths.  Bump ``version`` when the
    computation changes meaning, so old cached data is not reused.  ``default=False`` keeps a long computation
    (the verifier's power study) out of builds that name no IDs; ``--only ID`` builds it.

    ``members(settings)``, for a figure built from training runs, lists the run configs ``compute`` trains (or
    reuses), so ``mvm figures --executor`` can train them as cluster jobs first (:mod:`empirical.sweep`);
    ``final_checkpoints=False`` when ``compute`` keeps no final checkpoint of them.
    """

    figure_id: str
    title: str
    kind: str
    settings: Callable[[FigureContext], dict[str, Any]]
    compute: Callable[[Mapping[str, Any], FigureContext], Computed]
    plot: Callable[[Mapping[str, Any], Path], list[Path]]
    version: int = 1
    default: bool = True
    members: Callable[[Mapping[str, Any]], Sequence[Any]] | None = None
    final_checkpoints: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FIGURE_KINDS:
            raise ValueError(f"kind must be one of {list(FIGURE_KINDS)}, got {self.kind!r}")
        if not self.figure_id.isidentifier():
            raise ValueError(f"figure_id must be an identifier (it names files), got {self.figure_id!r}")


_REGISTRY: dict[str, FigureSpec] = {}


def register(spec: FigureSpec) -> FigureSpec:
    """Add ``spec`` to the catalogue (an ID registers once)."""
    if spec.figure_id in _REGISTRY and _REGISTRY[spec.figure_id] is not spec:
        raise ValueError(f"figure {spec.figure_id!r} is registered twice")
    _REGISTRY[spec.figure_id] = spec
    return spec


def available_figures() -> list[str]:
    """Every figure ID, in the order ``mvm figures`` builds them."""
    from paper_figures.catalog import FIGURE_MODULES  # importing it registers every figure

    order = {name: position for position, name in enumerate(FIGURE_MODULES)}
    return sorted(_REGISTRY, key=lambda figure_id: order.get(_REGISTRY[figure_id].compute.__module__, len(order)))


def default_figures() -> list[str]:
    """The IDs a build without ``only`` makes: every figure except those marked ``default=False``."""
    return [figure_id for figure_id in available_figures() if _REGISTRY[figure_id].default]


def get_figure(figure_id: str) -> FigureSpec:
    """The spec of ``figure_id``; ``ValueError`` naming the known IDs otherwise."""
    known = available_figures()
    if figure_id not in _REGISTRY:
        raise ValueError(f"unknown figure {figure_id!r}; known: {', '.join(known)}")
    return _REGISTRY[figure_id]


def plain(value: Any) -> Any:
    """Arrays and tuples as nested lists, so computed data can be stored as JSON."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
