"""The one list of kinds a traced op or a profile row can have (DESIGN.md, "Conventions added 2026-12-07"); the
JSON schema's `rowKind` enum is this list (tests/test_trust.py compares them). Plain strings, no torch.

An op's kind says what the module that issued it is, not only which aten op ran: a product on an nn.Linear's
weight is `linear` (bias or not), a product of two activations is `matmul` - or `attention` inside scaled dot-product
attention or nn.MultiheadAttention's score/value products -, every product inside an LSTM/GRU/RNN is `recurrent`,
and a norm says which norm it is. A row takes its single op kind, or a convolution's layer kind."""

from __future__ import annotations

#: op kinds whose MACs are counted (the totals' MACs are the sum of these)
MAC_KINDS = ("conv", "linear", "matmul", "attention", "recurrent")
#: normalization kinds: counted as rows and bytes, no MACs (DESIGN: bias-like additions are not MACs)
NORM_KINDS = ("batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm")
#: every op kind, in the order `by_op_kind` lists them
OP_KINDS = (*MAC_KINDS, *NORM_KINDS, "pooling", "elementwise", "other")
#: a convolution row's kind: its layer's kind (dscalc.cost.kinds), as `dscalc layer --kind` names it
CONV_KINDS = ("standard", "grouped", "depthwise", "pointwise", "separable", "transposed")
#: a row that groups several kinds of op (`module`), or holds parameters but no counted op (`params`)
GROUP_KINDS = ("module", "params")
#: every kind a profile row can have
ROW_KINDS = (*CONV_KINDS, *OP_KINDS, *GROUP_KINDS)

__all__ = ["MAC_KINDS", "NORM_KINDS", "OP_KINDS", "CONV_KINDS", "GROUP_KINDS", "ROW_KINDS"]
