"""dscalc: exact cost of convolutions, standard vs depthwise-separable.

The public API is the cost engine (pure Python, no torch import)::

    from dscalc import conv, depthwise, pointwise, linear, separable_of

Layout (see ARCHITECTURE.md): `dscalc.cost` (exact counts, no torch) <- `dscalc.trace` (real models) and
`dscalc.measure` (timing, ceilings, prediction) <- `dscalc.report` (one builder per command) <- `dscalc.cli`.
"""

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv, depthwise, linear, pointwise

__all__ = ["conv", "depthwise", "linear", "pointwise", "separable_of"]
