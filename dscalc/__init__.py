"""dscalc: exact cost of convolutions, standard vs depthwise-separable.

The public API is the cost engine (pure Python, no torch import)::

    from dscalc import conv, depthwise, pointwise, linear, separable_of
"""

from dscalc.layers import conv, depthwise, linear, pointwise, separable_of

__all__ = ["conv", "depthwise", "linear", "pointwise", "separable_of"]
