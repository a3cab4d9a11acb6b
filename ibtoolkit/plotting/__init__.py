"""Figures of the information-plane table (see :mod:`ibtoolkit.plane`) and of the phase analysis.

Every function takes a tidy DataFrame, returns a :class:`matplotlib.figure.Figure` and, with
``path=...``, also writes ``<path>.png`` and ``<path>.pdf`` (:func:`save_figure`).  Figures are
built on :class:`~matplotlib.figure.Figure` directly (Agg canvas), never through ``pyplot``, so
nothing here changes global matplotlib state, opens windows or keeps figures alive.

Conventions shared by all figures
---------------------------------
* Axes in **bits**: x = I(X;T), y = I(T;Y) (Shwartz-Ziv & Tishby, 2017, Fig. 2 style: one
  trajectory per layer, points coloured by epoch).  The two ceilings are dashed lines:
  ``log2 N`` (``ixt_ceiling``, distinct analysis inputs) and ``H(Y)`` (``h_y``).
* Layers keep one colour (``tab10`` by depth) in every figure; epochs use one colormap
  (``viridis`` by default) with a *symmetric-log* scale (``SymLogNorm(linthresh=1)``): linear
  on [0, 1] and logarithmic above, so epoch 0 (before training) has a place on a log axis without
  shifting the other epochs.  The MI-vs-epoch and metrics figures use the same ``symlog`` x axis.
* Several seeds (several ``run`` values of one model and estimator): the line is the per-epoch
  **median** over seeds and the band the **interquartile range** (25th-75th percentile); in the
  plane the band is drawn as translucent IQR boxes around each median point.
* Only rows with ``status == "ok"`` are drawn.
* Phase markers (from :mod:`ibtoolkit.phases`): a DataFrame with columns ``layer``, ``e_fit``,
  ``e_peak`` (median over its rows per layer); ◆ marks ``e_fit`` (end of fitting), ★ ``e_peak``
  (maximum of I(X;T)), placed on the recorded epoch nearest in log(epoch + 1).
"""
from .common import layer_colors, save_figure
from .epochs import plot_metrics, plot_mi_vs_epoch
from .phases import plot_overlap
from .plane import plot_estimator_grid, plot_information_plane

__all__ = ["plot_information_plane", "plot_mi_vs_epoch", "plot_metrics", "plot_estimator_grid",
           "plot_overlap", "save_figure", "layer_colors"]
