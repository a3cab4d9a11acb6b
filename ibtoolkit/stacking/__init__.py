"""Many models trained as one: :func:`stack` (also ``ibtoolkit.models.stack``).

See ``docs/stacking.md``: why each member's updates are those of separate training, the two paths
(member-axis layers or side-by-side sub-models), and how :class:`~ibtoolkit.IBCallback` writes one
ordinary store per member.
"""
from .build import PATHS, stack
from .model import StackedModel, is_stacked

__all__ = ["stack", "StackedModel", "is_stacked", "PATHS"]
