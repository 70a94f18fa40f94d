"""The one list of kinds a traced op or a profile row can have (DESIGN.md, "Conventions added 2026-12-07"); the
JSON schema's `rowKind` enum is this list (tests/test_trust.py compares them). Plain strings, no torch.

An op's kind says what the module that issued it is, not only which aten op ran: a product on an nn.Linear's
weight is `linear` (bias or not), a product of two activations is `matmul` - or `attention` inside scaled dot-product
attention or nn.MultiheadAttention's score/value products -, every product inside an LSTM/GRU/RNN is `recurrent`,
and a norm says which norm it is. A row takes its single op kind, or a convolution's layer kind."""

from __future__ import annotations

from dscalc.cost.kinds import KINDS

#: op kinds whose MACs are counted (the totals' MACs are the sum of these)
MAC_KINDS = ("conv", "linear", "matmul", "attention", "recurrent")
#: normalization kinds: counted as rows and bytes, no MACs (DESIGN: bias-like additions are not MACs)
NORM_KINDS = ("batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm")
#: every op kind, in the order `by_op_kind` lists them
OP_KINDS = (*MAC_KINDS, *NORM_KINDS, "pooling", "elementwise", "other")
#: a convolution row's kind: its layer's kind (dscalc.cost.kinds), as `dscalc layer --kind` names it
CONV_KINDS = tuple(k for k in KINDS if k != "linear")  # a linear row is the `linear` op kind
#: a row that groups several kinds of op (`module`), or holds parameters but no counted op (`params`)
GROUP_KINDS = ("module", "params")
#: every kind a profile row can have
ROW_KINDS = (*CONV_KINDS, *OP_KINDS, *GROUP_KINDS)

__all__ = ["MAC_KINDS", "NORM_KINDS", "OP_KINDS", "CONV_KINDS", "GROUP_KINDS", "ROW_KINDS"]


_INTERPOLATION = ("interpolation: each output is a fixed-weight blend of a few inputs (4 for bilinear, 16 for bicubic, "
                  "1 for nearest), no learned weight - not a layer's multiply-accumulate by the torchvision _ops "
                  "convention (fvcore counts upsample_bilinear2d at 4 per output element)")
_SELECTION = "selection, comparison, sorting, creation or data movement: no multiply-accumulate"
_SAMPLING = ("bilinear sampling of regions (4 weighted reads per sample point), no learned weight: interpolation, "
             "not a multiply-accumulate by the torchvision _ops convention")

#: ops the zoo leaves uncounted, and why (the op registry has no MAC formula for them, on purpose)
WHY_NOT_COUNTED: dict[str, str] = {
    **{op: _INTERPOLATION for op in ("upsample_bilinear2d", "upsample_nearest2d", "upsample_nearest1d",
                                     "upsample_nearest3d", "upsample_bicubic2d", "upsample_linear1d",
                                     "upsample_trilinear3d", "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa",
                                     "_upsample_nearest_exact2d", "grid_sampler_2d", "grid_sampler_3d")},
    **{op: _SAMPLING for op in ("torchvision::roi_align", "torchvision::roi_pool", "torchvision::ps_roi_align",
                                "torchvision::multi_scale_roi_align")},
    **{op: _SELECTION for op in ("topk", "sort", "argsort", "_unique2", "unique_dim", "nonzero", "torchvision::nms",
                                 "index_put_", "index_put", "full_like", "argmax", "argmin", "max", "min", "amax",
                                 "amin", "gather", "scatter", "scatter_add", "scatter_add_", "index_select",
                                 "embedding", "cumsum", "masked_select", "bucketize", "searchsorted", "index_add_",
                                 "index_copy_", "_index_put_impl_", "im2col", "col2im", "floor", "ceil", "round",
                                 "sign", "bitwise_not", "logical_not", "any", "all", "isnan", "isinf", "linspace",
                                 "logspace")},
}
