"""Phase analysis of information-plane trajectories: fitting, compression, whether they overlap, and
whether the estimate can tell.

Shwartz-Ziv & Tishby (2017, "Opening the black box of deep neural networks via information")
describe a *fitting* phase, in which I(T;Y) and I(X;T) grow, followed by a longer *compression*
phase, in which I(X;T) falls.  Raj, Nayak & Kalyani (2020, "Understanding learning dynamics of
binary neural networks via information bottleneck") report that in BNNs both happen at once.  This
package measures that per layer from the tidy information-plane table
(:func:`ibtoolkit.information_plane`) without assuming the answer; docs/phases.md has every
definition with its formula.

One concept per module:

* :mod:`~ibtoolkit.phases.trajectory`: one layer's phases (:func:`analyse_trajectory`), verdicts
  ``simultaneous``, ``separate``, ``no compression`` and ``undetermined``;
* :mod:`~ibtoolkit.phases.gating`: the validity gates behind ``undetermined`` and its ``reason``;
* :mod:`~ibtoolkit.phases.statistic`: the threshold-free statistic D (compression during fitting);
* :mod:`~ibtoolkit.phases.table`: per-trajectory and per-group tables with robustness
  (:func:`trajectory_phases`, :func:`phase_table`);
* :mod:`~ibtoolkit.phases.contrast`: the seed-level test of a claim between two groups (:func:`contrast`);
* :mod:`~ibtoolkit.phases.checks`: estimator agreement, DPI / depth monotonicity, saturation.
"""
from .checks import AgreementResult, copies_exact, dpi_violations, estimator_agreement, saturation
from .contrast import CONTRAST_COLUMNS, bootstrap_interval, compare_seeds, contrast, holm, permutation_p_value
from .gating import GATE_DEFAULTS, REASONS, gate_reason, saturated_epochs, theil_sen_slope
from .statistic import compression_during_fit
from .table import DEFAULT_GROUP_BY, OUTCOMES, ROBUSTNESS_GRID, phase_table, trajectory_phases
from .trajectory import SPEC_DEFAULTS, VERDICTS, PhaseResult, analyse_trajectory, smooth

__all__ = ["PhaseResult", "AgreementResult", "VERDICTS", "OUTCOMES", "REASONS", "SPEC_DEFAULTS", "GATE_DEFAULTS",
           "ROBUSTNESS_GRID", "DEFAULT_GROUP_BY", "CONTRAST_COLUMNS", "analyse_trajectory", "smooth",
           "gate_reason", "saturated_epochs", "theil_sen_slope", "compression_during_fit", "trajectory_phases", "phase_table",
           "contrast", "compare_seeds", "permutation_p_value", "bootstrap_interval", "holm", "estimator_agreement", "dpi_violations",
           "saturation", "copies_exact"]
