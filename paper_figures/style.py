"""One look for every figure: sizes for a two-column paper, a colour-blind-safe palette, bands, PNG + PDF.

Colours are the Okabe-Ito palette; SGD is always blue and SGDM always vermillion, so a reader who has
seen one figure reads the others.  Widths are those of a two-column paper (3.25 in one column, 6.75 in
both); fonts are 8 pt so the figures print at the size they are drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLUMN_WIDTH",
    "FULL_WIDTH",
    "OPTIMIZER_COLORS",
    "PALETTE",
    "band",
    "figure_style",
    "new_figure",
    "save_figure",
]

#: Okabe-Ito colour-blind-safe palette: blue, vermillion, bluish green, reddish purple, orange, sky blue, black.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
OPTIMIZER_COLORS = {"SGD": PALETTE[0], "SGDM": PALETTE[1]}
COLUMN_WIDTH = 3.25
FULL_WIDTH = 6.75

_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # TrueType in the PDF, so the text stays editable and searchable
}


def _matplotlib() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window
    return matplotlib


@contextmanager
def figure_style() -> Iterator[None]:
    """Matplotlib settings of every figure in this package, restored on exit."""
    matplotlib = _matplotlib()
    from cycler import cycler

    rc = dict(_RC, **{"axes.prop_cycle": cycler(color=list(PALETTE))})
    with matplotlib.rc_context(rc):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = COLUMN_WIDTH, height: float = 2.3, **kwargs: Any):
    """A figure and its axes (``plt.subplots`` with constrained layout); call inside :func:`figure_style`."""
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width, height), constrained_layout=True, squeeze=False, **kwargs)


def band(
    ax: Any, x: Sequence[float], mean: Sequence[float], low: Sequence[float], high: Sequence[float], **kwargs: Any
):
    """A line with a shaded confidence band of the same colour."""
    (line,) = ax.plot(x, mean, **kwargs)
    ax.fill_between(x, np.asarray(low, float), np.asarray(high, float), color=line.get_color(), alpha=0.2, lw=0)
    return line


def save_figure(fig: Any, stem: str | Path, dpi: int = 200) -> list[Path]:
    """Write ``stem.png`` (raster, ``dpi``) and ``stem.pdf`` (vector), close the figure, return both paths."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(written[0], dpi=dpi)
    fig.savefig(written[1])
    plt.close(fig)
    return written
