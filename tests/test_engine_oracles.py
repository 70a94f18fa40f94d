"""Layer 2: the engine against independent oracles - torch modules, FlopCounterMode and fvcore.

For every random configuration (every kind, 1D/2D/3D, stride, padding incl. Keras 'same', dilation,
groups, depth multiplier, bias, batch): params == sum(p.numel()) of the equivalent torch module,
MACs == FlopCounterMode / 2 == fvcore, output shape == torch's.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_oracles import fvcore_macs, module_for, n_params, torch_macs

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv, depthwise, linear
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput

KINDS = ("standard", "grouped", "depthwise", "pointwise", "transposed", "linear", "separable")


@st.composite
def layer_configs(draw) -> tuple[LayerCost, int]:
    kind = draw(st.sampled_from(KINDS))
    batch = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    if kind == "linear":
        return linear(draw(st.integers(1, 48)), draw(st.integers(1, 48)), batch=batch, bias=bias), 1
    dims = draw(st.integers(1, 3))
    max_size = (40, 14, 7)[dims - 1]
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims)) if kind != "pointwise" else (1,) * dims
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    min_size = max(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    size = tuple(draw(st.integers(min_size, max(min_size, max_size))) for _ in range(dims))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2)))
    groups = draw(st.sampled_from([2, 3, 4])) if kind in ("grouped",) else 1
    dm = draw(st.integers(1, 3)) if kind in ("depthwise", "separable") else 1
    cin = groups * draw(st.integers(1, 6))
    cout = groups * draw(st.integers(1, 6))
    kw = dict(batch=batch, stride=stride, dilation=dilation, padding=padding, bias=bias)
    if kind == "depthwise":
        return depthwise(cin, kernel, size, depth_multiplier=dm, **kw), dm
    if kind == "transposed":
        groups = draw(st.sampled_from([1, 2, 3]))
        cin, cout = groups * draw(st.integers(1, 5)), groups * draw(st.integers(1, 5))
        out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        if padding == "same":
            out_pad = 0
        try:
            return conv(cin, cout, kernel, size, groups=groups, transposed=True, output_padding=out_pad, **kw), 1
        except BadInput:  # padding crops away the whole output: torch rejects it too (tested in test_cli)
            assume(False)
    if kind == "separable" and all(k == 1 for k in kernel):
        kernel = (3,) * dims
        size = tuple(max(s, 2 * d + 1) for s, d in zip(size, dilation))
    return conv(cin, cout, kernel, size, groups=groups, **kw), dm


def check(layer: LayerCost, module: nn.Module) -> None:
    x = torch.randn(layer.input_shape)
    macs, out_shape = torch_macs(module, x)
    assert out_shape == layer.output_shape, (layer, out_shape)
    assert n_params(module) == layer.params
    assert macs == layer.macs
    assert fvcore_macs(module, x) == layer.macs


def check_config(config: tuple[LayerCost, int]) -> None:
    layer, dm = config
    check(layer, module_for(layer))
    comparison = separable_of(layer, dm)
    if comparison is not None:
        dw, pw = comparison.depthwise, comparison.pointwise
        pair = nn.Sequential(module_for(dw), module_for(pw))
        check(dw, pair[0])
        check(pw, pair[1])
        x = torch.randn(layer.input_shape)
        macs, out_shape = torch_macs(pair, x)
        assert out_shape == layer.output_shape  # the pair is a drop-in replacement
        assert (macs, n_params(pair)) == (comparison.macs, comparison.params)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(layer_configs())
def test_layer_matches_torch_flopcounter_and_fvcore(config):
    """Every run: 300 configs from a fixed seed (the same ones each time), every assertion of the long run."""
    check_config(config)


@pytest.mark.long
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_configs())
def test_layer_matches_torch_flopcounter_and_fvcore_long(config):
    """`pytest -m long`: 2,000 fresh random configs."""
    check_config(config)
