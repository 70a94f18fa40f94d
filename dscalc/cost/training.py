"""Training cost, exact: the backward pass of every layer kind - which gradients autograd computes and what each
costs in MACs - and the memory of a training step: weights, gradients, optimizer state, the activations autograd
saves for backward, the peak, and the largest batch that fits. Pure Python, no torch: declared networks and single
layers are costed here; traced models (`dscalc.trace.training`) produce the same records from a real backward.

The backward of a conv or linear layer, by hand. Forward: every output element y[o] = sum over its taps of
w[k] * x[i]. Backward, with g = dL/dy:

* grad-input  dL/dx[i] = sum of g[o] * w[k] over the (o, k) pairs that read x[i]   (a transposed conv of g)
* grad-weight dL/dw[k] = sum of g[o] * x[i] over the (o, i) pairs that use w[k]    (a conv of x with g)

Each forward multiply w[k] * x[i] -> y[o] has exactly one partner in each sum, so each gradient costs exactly the
forward MACs - for grouped and depthwise convs too (a weight of group j only meets the inputs of group j), and for
transposed convs (the forward scatter read backwards). Bias gradients are additions, one per output element
(dL/db[c] = sum of g over batch and positions), listed apart and never counted as MACs.

    >>> from dscalc import conv
    >>> from dscalc.cost.training import backward
    >>> dw = backward(conv(64, 64, 3, 56, padding=1, groups=64))   # 3x3 depthwise over 64x56x56
    >>> dw.forward_macs, dw.grad_input_macs, dw.grad_weight_macs
    (1806336, 1806336, 1806336)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dscalc.cost.dtypes import itemsize as dtype_bytes
from dscalc.cost.formulas import numel
from dscalc.cost.layers import MAX_VALUE
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.errors import BadInput

# --------------------------------------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class Optimizer:
    """What a torch.optim optimizer keeps and allocates (torch 2.14.1, the for-loop implementation the CPU runs)."""

    name: str  # the --optimizer value
    torch: str  # what it stands for
    buffers: int  # parameter-sized state tensors per parameter (momentum buffer; Adam's exp_avg, exp_avg_sq)
    step_counter: bool  # a float32 scalar `step` per parameter tensor (Adam, AdamW)
    transient: int  # temporaries the size of the tensor being updated (Adam: sqrt, then divide)


#: bytes of one step counter: torch keeps `step` as a float32 scalar on the CPU (optim._get_scalar_dtype)
STEP_BYTES = 4

OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", "torch.optim.SGD(momentum=0)", 0, False, 0),
    Optimizer("momentum", "torch.optim.SGD(momentum=0.9)", 1, False, 0),
    Optimizer("adam", "torch.optim.Adam", 2, True, 2),
    Optimizer("adamw", "torch.optim.AdamW", 2, True, 2),
)}


def optimizer(name: str) -> Optimizer:
    """The Optimizer of a name, or bad input naming the choices."""
    found = OPTIMIZERS.get(name)
    if found is None:
        raise BadInput(f"unknown optimizer {name[:40]!r}; choose one of {', '.join(OPTIMIZERS)}", "optimizer")
    return found


def state_bytes(opt: Optimizer, trainable: int, tensors: int, itemsize: int) -> int:
    """Bytes of optimizer state for `trainable` parameters in `tensors` tensors."""
    return opt.buffers * trainable * itemsize + (STEP_BYTES * tensors if opt.step_counter else 0)


def step_transient(opt: Optimizer, sizes: list[int] | tuple[int, ...], itemsize: int) -> int:
    """The most bytes the update's temporaries hold at once, parameters updated in order (`sizes`: their
    elements). torch's for-loop Adam computes `denom = (exp_avg_sq.sqrt() / c).add_(eps)`: while tensor i's sqrt
    and quotient exist, the previous tensor's `denom` is still referenced - 2 x s_i + s_(i-1) elements."""
    if not opt.transient:
        return 0
    worst, previous = 0, 0
    for s in sizes:
        worst = max(worst, opt.transient * s + previous)
        previous = s
    return worst * itemsize


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class TrainingRow:
    """One layer's training cost: its forward, the gradients autograd computes (MACs), what it keeps for backward."""

    name: str
    kind: str
    forward_macs: int = 0
    grad_input_macs: int = 0
    grad_weight_macs: int = 0
    grad_bias_adds: int = 0  # additions summing the output gradient into the bias gradient (not MACs)
    recompute_macs: int = 0  # forward work done again during backward (fused attention, checkpointing)
    input_grad: bool = False  # autograd computes the gradient of the layer's input
    weight_grad: bool = False  # ... and of its parameters
    trainable: int = 0  # parameters that get a gradient
    frozen: int = 0  # parameters with requires_grad=False
    sizes: tuple[int, ...] = ()  # elements of each trainable parameter tensor, in torch's order
    saved_bytes: int = 0  # activations this layer made autograd keep (first keeper of each storage)
    flop_counter_grad_weight: int | None = None  # what FlopCounterMode (torch 2.14.1) reports, where it differs

    @property
    def tensors(self) -> int:
        """Trainable parameter tensors (Adam keeps one step counter each)."""
        return len(self.sizes)

    @property
    def backward_macs(self) -> int:
        return self.grad_input_macs + self.grad_weight_macs + self.recompute_macs

    @property
    def training_macs(self) -> int:
        return self.forward_macs + self.backward_macs

    def to_dict(self, opt: Optimizer, itemsize: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "forward_macs": self.forward_macs, "grad_input_macs": self.grad_input_macs,
            "grad_weight_macs": self.grad_weight_macs, "grad_bias_adds": self.grad_bias_adds,
            "recompute_macs": self.recompute_macs, "backward_macs": self.backward_macs,
            "training_macs": self.training_macs, "training_flops": 2 * self.training_macs,
            "input_grad": self.input_grad, "weight_grad": self.weight_grad,
            "trainable_params": self.trainable, "frozen_params": self.frozen,
            "saved_bytes": self.saved_bytes, "weight_bytes": (self.trainable + self.frozen) * itemsize,
            "grad_bytes": self.trainable * itemsize,
            "optimizer_bytes": state_bytes(opt, self.trainable, self.tensors, itemsize),
        }
        if self.flop_counter_grad_weight is not None:
            row["flop_counter_grad_weight_macs"] = self.flop_counter_grad_weight
        return row


@dataclass(frozen=True)
class Memory:
    """The memory of a training step at one dtype and optimizer, in bytes, each part named."""

    dtype: str
    optimizer: str
    weights: int  # every parameter (trainable and frozen)
    buffers: int  # BatchNorm running statistics
    gradients: int  # one per trainable parameter, at its dtype
    optimizer_state: int  # exists from the first step on
    saved: int  # activations autograd keeps for backward, deduplicated by storage (the input batch included)
    inputs: int  # the input batch
    peak_backward: int  # the largest live total during forward + backward, optimizer state included
    peak_step: int  # during optimizer.step(): weights, gradients, state, the update's temporaries
    method: str  # "estimate" (declared networks, layers) or "simulated" (traced models: every tensor's lifetime)
    assumptions: tuple[str, ...] = ()

    @property
    def peak(self) -> int:
        return max(self.peak_backward, self.peak_step)

    @property
    def peak_phase(self) -> str:
        return "backward" if self.peak_backward >= self.peak_step else "optimizer step"

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "optimizer": self.optimizer, "weights": self.weights, "buffers": self.buffers,
                "gradients": self.gradients, "optimizer_state": self.optimizer_state,
                "saved_activations": self.saved, "inputs": self.inputs, "peak_backward": self.peak_backward,
                "peak_step": self.peak_step, "peak": self.peak, "peak_phase": self.peak_phase,
                "method": self.method, "assumptions": list(self.assumptions)}


@dataclass(frozen=True)
class BatchFit:
    """The largest batch whose peak fits a memory limit."""

    limit: int
    batch: int
    peak: int  # at that batch
    next_peak: int | None  # at batch + 1 (None when the batch is the largest dscalc accepts)

    def to_dict(self) -> dict[str, Any]:
        return {"memory_limit": self.limit, "batch": self.batch, "peak": self.peak, "next_peak": self.next_peak}


@dataclass
class Training:
    """A training step, per layer and in total: MACs of forward and backward, and memory."""

    rows: list[TrainingRow]
    memory: Memory
    batch: int
    fit: BatchFit | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def opt(self) -> Optimizer:
        return OPTIMIZERS[self.memory.optimizer]

    @property
    def itemsize(self) -> int:
        return dtype_bytes(self.memory.dtype)

    @property
    def totals(self) -> dict[str, int]:
        keys = ("forward_macs", "grad_input_macs", "grad_weight_macs", "grad_bias_adds", "recompute_macs",
                "backward_macs", "training_macs")
        out = {k: sum(getattr(r, k) for r in self.rows) for k in keys}
        out["training_flops"] = 2 * out["training_macs"]
        out["trainable_params"] = sum(r.trainable for r in self.rows)
        out["frozen_params"] = sum(r.frozen for r in self.rows)
        out["saved_bytes"] = sum(r.saved_bytes for r in self.rows)
        # the peers' rule of thumb (DeepSpeed's profiler, calflops): backward = 2 x forward
        out["two_x_forward_macs"] = 2 * out["forward_macs"]
        return out

    def row_dicts(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.to_dict(self.opt, self.itemsize) for r in self.rows}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "optimizer": self.memory.optimizer, "dtype": self.memory.dtype, "batch": self.batch,
            "conventions": CONVENTIONS, "rows": [{"name": r.name, "kind": r.kind, **r.to_dict(self.opt, self.itemsize)}
                                                 for r in self.rows],
            "totals": self.totals, "memory": self.memory.to_dict()}
        if self.fit is not None:
            data["fit"] = self.fit.to_dict()
        return data


def mac_speedup(original: Training, separable: Training) -> float:
    """How many times fewer training MACs (forward + backward) the separable version needs: the one ratio every
    training view of a pair shows beside its measured speedup."""
    return original.totals["training_macs"] / separable.totals["training_macs"]


#: the training conventions, stated in every JSON document and under every training table
CONVENTIONS = {
    "backward": "grad-input MACs = grad-weight MACs = forward MACs for conv (grouped, depthwise, transposed "
                "included) and linear layers; each counted only where autograd computes it",
    "input_grad": "no input gradient where nothing upstream needs one: a network's first layer, a model's input",
    "frozen": "no weight gradient for frozen parameters (requires_grad=False)",
    "layer": "a standalone layer is taken as a layer inside a network: both gradients",
    "bias": "bias gradients are additions (one per output element), listed apart, not MACs",
    "saved": "activations autograd saves for backward, each storage once; parameters and buffers excluded, "
             "the input batch included where a layer keeps it",
    "training_macs": "forward + grad-input + grad-weight (+ recompute); FLOPs = 2 x MACs",
}


# ------------------------------------------------------------------------------------- backward closed forms

def _mirror(layer: LayerCost, input_grad: bool, weight_grad: bool) -> tuple[int, int, int]:
    """Convolutions of every kind and linear layers: grad-input = grad-weight = forward MACs (each forward multiply
    has one partner in each gradient); the bias gradient is one addition per output element."""
    return (layer.macs if input_grad else 0, layer.macs if weight_grad else 0,
            numel(layer.output_shape) if weight_grad and layer.bias else 0)


#: the backward of each weighted layer kind (`cost.kinds.WEIGHTED`), the one place a kind's gradients are costed:
#: (layer, input_grad, weight_grad) -> (grad-input MACs, grad-weight MACs, bias-gradient additions). A new kind adds
#: its entry here (tests/test_training.py fails for a weighted kind without one).
BACKWARD: dict[str, Callable[[LayerCost, bool, bool], tuple[int, int, int]]] = {
    "standard": _mirror,  # dx: a transposed conv of the gradient with w; dw: a conv of x with the gradient
    "grouped": _mirror,  # the same within each group: a weight of group j only meets group j's inputs
    "depthwise": _mirror,  # groups = C_in (x depth multiplier): every tap meets B x D_F^2 positions
    "pointwise": _mirror,  # a matrix product per position
    "transposed": _mirror,  # the forward scatter read backwards: dx is a conv of the gradient, dw as forward
    "linear": _mirror,  # dx = dy W (B·N·M), dW = dyᵀ x (N·B·M)
}


def flop_counter_grad_weight(layer: LayerCost) -> int:
    """FlopCounterMode's grad-weight count in torch 2.14.1 (`conv_backward_flop`, divided by 2 for MACs): it builds
    the weight gradient as a conv of all C_in x C_out channel pairs and never divides by `groups`, so it reports
    groups x the true count (64x for a 64-channel depthwise conv)."""
    return layer.macs * layer.groups


def backward(layer: LayerCost, input_grad: bool = True, weight_grad: bool = True) -> TrainingRow:
    """The backward of one layer by its kind's entry in BACKWARD (conv of any kind, linear: each gradient autograd
    computes costs the forward MACs; the bias gradient is one addition per output element). Other rows (BN,
    activations, pooling) have no MACs in either direction."""
    weights = layer.weights + layer.bias + layer.norm
    # torch's parameter order: weight, bias (conv, linear); weight, bias (BatchNorm's gamma, beta)
    sizes = tuple(s for s in (layer.weights, layer.bias, layer.norm // 2, layer.norm // 2) if s)
    trainable, frozen = (weights, 0) if weight_grad else (0, weights)
    kept = sizes if weight_grad else ()
    form = BACKWARD.get(layer.kind)
    if form is None:
        return TrainingRow(layer.name, layer.kind, input_grad=input_grad, weight_grad=weight_grad and weights > 0,
                           trainable=trainable, frozen=frozen, sizes=kept)
    grad_input, grad_weight, bias_adds = form(layer, input_grad, weight_grad)
    return TrainingRow(
        layer.name, layer.kind, forward_macs=layer.macs, grad_input_macs=grad_input, grad_weight_macs=grad_weight,
        grad_bias_adds=bias_adds, input_grad=input_grad, weight_grad=weight_grad,
        flop_counter_grad_weight=flop_counter_grad_weight(layer) if weight_grad and layer.groups > 1 else None,
        trainable=trainable, frozen=frozen, sizes=kept)


def matmul(m: int, k: int, n: int, batch: int = 1, a_grad: bool = True, b_grad: bool = True,
           name: str = "matmul", b_is_weight: bool = False) -> TrainingRow:
    """C = A @ B, A (batch, m, k), B (batch, k, n): forward batch·m·k·n MACs; dA = dC @ Bᵀ (batch·m·n·k) and
    dB = Aᵀ @ dC (batch·k·m·n), each computed only where needed. With `b_is_weight` B is a parameter (a linear
    layer: dA is the grad-input, dB the grad-weight); otherwise both are activations (attention's Q Kᵀ)."""
    macs = batch * m * k * n
    da, db = (macs if a_grad else 0), (macs if b_grad else 0)
    if b_is_weight:
        return TrainingRow(name, "linear", macs, da, db, input_grad=a_grad, weight_grad=b_grad)
    return TrainingRow(name, "matmul", macs, da + db, 0, input_grad=a_grad or b_grad)


def attention(heads: int, query: int, keys: int, dim: int, value_dim: int | None = None, *, fused: bool = False,
              q_grad: bool = True, k_grad: bool = True, v_grad: bool = True, name: str = "attention") -> TrainingRow:
    """Scaled dot-product attention, `heads` = batch x heads, L = query, S = keys, E = dim, Ev = value_dim.
    Forward: scores Q Kᵀ (L·S·E) and P V (L·S·Ev). Backward: dV = Pᵀ dO (S·L·Ev); dP = dO Vᵀ (L·Ev·S) where Q or K
    needs a gradient; dQ = dS K (L·S·E); dK = dSᵀ Q (S·L·E) - all gradients of activations (grad-input). A fused
    kernel (flash attention, as the CPU runs it) keeps only log-sum-exp and recomputes Q Kᵀ (L·S·E) in backward."""
    ev = dim if value_dim is None else value_dim
    per = heads * query * keys
    forward = per * (dim + ev)
    grads = (per * ev if v_grad else 0) + (per * ev if q_grad or k_grad else 0) + (per * dim if q_grad else 0) \
        + (per * dim if k_grad else 0)
    recompute = per * dim if fused and (q_grad or k_grad or v_grad) else 0
    return TrainingRow(name, "attention", forward, grads, 0, recompute_macs=recompute,
                       input_grad=q_grad or k_grad or v_grad)


#: gates per recurrent cell: one projection each of the input and of the hidden state
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def recurrent(mode: str, input_size: int, hidden: int, steps: int, batch: int = 1, *, layers: int = 1,
              bidirectional: bool = False, input_grad: bool = True, fused: bool = False,
              name: str | None = None) -> TrainingRow:
    """RNN / GRU / LSTM with G gates (1, 3, 4), input size I, hidden size H, T steps, batch B. Forward per layer and
    direction: T·B·G·H·(I + H) (input and hidden projections of every step, bias excluded). Backward: grad-weight
    T·B·G·H·(I + H) (dW_ih and dW_hh; step 0 multiplies the zero initial state, and is computed); grad-input
    T·B·G·H·I for the layer's input where needed, and the gradient through the hidden state (T - 1)·B·G·H·H (the
    zero initial state needs none). A fused kernel (oneDNN's LSTM on the CPU) computes every gradient: also the
    input's and the initial state's (T·B·G·H·H)."""
    if mode not in GATES:
        raise BadInput(f"expected one of {', '.join(GATES)}, got {mode!r}", "mode")
    g, dirs = GATES[mode], 2 if bidirectional else 1
    forward = grad_in = grad_w = 0
    size = input_size
    for layer in range(layers):
        per_dir_in, per_dir_h = steps * batch * g * hidden * size, steps * batch * g * hidden * hidden
        forward += dirs * (per_dir_in + per_dir_h)
        grad_w += dirs * (per_dir_in + per_dir_h)
        needs_input = fused or input_grad or layer > 0
        grad_in += dirs * ((per_dir_in if needs_input else 0)
                           + (per_dir_h if fused else (steps - 1) * batch * g * hidden * hidden))
        size = hidden * dirs
    return TrainingRow(name or mode, "recurrent", forward, grad_in, grad_w, input_grad=input_grad or fused,
                       weight_grad=True)


# -------------------------------------------------------------------------------- data flow of a network

#: activations run in place where that is legal (torchvision's choice): relu keeps its result (the storage it
#: overwrote); these keep a copy of their input, made before they overwrite it
_INPLACE_KEEPS_RESULT = frozenset({"relu", "activation"})
_INPLACE_KEEPS_COPY = frozenset({"relu6", "swish", "hardswish"})
#: rows that keep their own output for backward (an in-place op after them would invalidate it)
_KEEPS_OUTPUT = frozenset({"relu", "activation", "sigmoid", "softmax"})
#: rows that share their input's storage (views)
_VIEWS = frozenset({"flatten"})
_CONVS = frozenset({"standard", "grouped", "depthwise", "pointwise", "transposed", "linear"})

NETWORK_ASSUMPTIONS = (
    "saved activations as PyTorch autograd keeps them for the equivalent torch modules (CPU kernels): conv and "
    "linear keep their input (an asymmetrically padded conv its padded copy); BatchNorm its input and two "
    "per-channel statistics; activations run in place (as torchvision's), relu keeping its result, "
    "relu6/swish/hardswish a copy of their input; max pooling its input and int64 indices; dropout an input-sized "
    "mask; global average pooling, flatten, add and concat nothing",
)

PEAK_ESTIMATE = (
    "peak estimate: backward runs the layers in reverse order; when layer l runs, the activations still needed "
    "by layers <= l, the gradients of every parameter of layers >= l, and layer l's output and input gradients "
    "are alive, beside the weights, buffers, optimizer state (from step 2 on), the input batch and the output",
)


def step_assumption(opt: Optimizer) -> str:
    if opt.transient:
        return (f"optimizer step ({opt.torch}, torch's for-loop update as on the CPU): weights, gradients and state, "
                "plus the update's temporaries: sqrt and quotient of the tensor being updated while the previous "
                "tensor's denominator is still referenced; the foreach update CUDA uses holds temporaries the size "
                "of all parameters instead")
    return f"optimizer step ({opt.torch}): updates in place, no temporaries"


def network(rows: list[LayerCost], sources: list[tuple[int, ...]], optimizer_name: str = "adam", *,
            input_grad: bool = False) -> Training:
    """The training step of a declared network (rows and data flow from `cost.network.dataflow`): which gradients
    autograd computes (no input gradient where nothing upstream has parameters, unless `input_grad`), what it
    keeps, and the memory. Every parameter is trainable."""
    opt = optimizer(optimizer_name)
    if not rows:
        raise BadInput("a network has at least one layer", "network")
    dtype = rows[0].dtype
    size = dtype_bytes(dtype)
    n = len(rows)
    consumers: dict[int, int] = {}
    for srcs in sources:
        for s in srcs:
            consumers[s] = consumers.get(s, 0) + 1
    needs = [False] * n  # the row's output requires grad
    has_input_grad = [False] * n
    tensor = [0] * n  # id of the storage each row's output lives in (-1: the input batch)
    saved_by: dict[int, int] = {}  # storage id -> first row that keeps it
    saved_size: dict[int, int] = {}
    keepers: dict[int, int] = {}  # storage id -> the lowest row index keeping it (freed after it runs backward)
    extra = [n]  # the next storage id for a tensor made only to be kept (statistics, masks, copies)
    rows_out = []

    def keep(sid: int, nbytes: int, row: int) -> None:
        if sid not in saved_by:
            saved_by[sid], saved_size[sid] = row, nbytes
        keepers[sid] = min(keepers.get(sid, row), row)

    def new(nbytes: int, row: int) -> None:
        keep(extra[0], nbytes, row)
        extra[0] += 1

    for i, r in enumerate(rows):
        srcs = sources[i]
        ig = any((needs[s] if s >= 0 else input_grad) for s in srcs)
        has_input_grad[i] = ig
        params = r.weights + r.bias + r.norm
        needs[i] = ig or params > 0
        src = srcs[0]
        in_id = tensor[src] if src >= 0 else -1
        in_bytes, out_bytes = numel(r.input_shape) * size, numel(r.output_shape) * size
        own_output = i
        inplace = (r.kind in _INPLACE_KEEPS_RESULT | _INPLACE_KEEPS_COPY and len(srcs) == 1
                   and consumers.get(src, 0) == 1 and not (src >= 0 and rows[src].kind in _KEEPS_OUTPUT))
        if r.kind in _VIEWS or inplace:
            own_output = in_id
        tensor[i] = own_output
        if needs[i]:  # the op has a backward node: it keeps what its gradient formula reads
            if r.kind in _CONVS:
                if r.kind != "transposed" and any(a != b for a, b in r.padding):
                    # torch pads asymmetrically with an explicit pad first (Keras 'same' on even sizes, dscalc's
                    # own timing module): the conv keeps the padded copy
                    batch, channels, *spatial = r.input_shape
                    padded = [n + a + b for n, (a, b) in zip(spatial, r.padding)]
                    new(batch * channels * math.prod(padded) * size, i)
                else:
                    keep(in_id, in_bytes, i)
            elif r.kind == "bn":
                keep(in_id, in_bytes, i)
                new(2 * r.input_shape[1] * size, i)
            elif r.kind in _INPLACE_KEEPS_RESULT:
                keep(own_output, out_bytes, i)
            elif r.kind in _INPLACE_KEEPS_COPY:
                if inplace:
                    new(in_bytes, i)
                else:
                    keep(in_id, in_bytes, i)
            elif r.kind in ("sigmoid", "softmax"):
                keep(own_output, out_bytes, i)
            elif r.kind == "dropout":
                new(in_bytes, i)
            elif r.kind == "maxpool":
                keep(in_id, in_bytes, i)
                new(numel(r.output_shape) * 8, i)
            elif r.kind == "avgpool":
                keep(in_id, in_bytes, i)
        rows_out.append(backward(r, input_grad=ig, weight_grad=True))
    # attribute each kept storage to the first row that keeps it
    per_row = [0] * n
    for sid, row in saved_by.items():
        per_row[row] += saved_size[sid]
    rows_out = [replace(t, saved_bytes=b) for t, b in zip(rows_out, per_row)]
    return Training(rows_out, _network_memory(rows, rows_out, needs, has_input_grad, tensor, saved_size, keepers,
                                              opt, dtype), rows[0].input_shape[0])


def _network_memory(rows: list[LayerCost], trows: list[TrainingRow], needs: list[bool], has_input_grad: list[bool],
                    tensor: list[int], saved_size: dict[int, int], keepers: dict[int, int], opt: Optimizer,
                    dtype: str) -> Memory:
    size = dtype_bytes(dtype)
    weights = sum(t.trainable + t.frozen for t in trows) * size
    buffers = sum(r.buffers for r in rows) * size
    grads = sum(t.trainable for t in trows) * size
    state = sum(state_bytes(opt, t.trainable, t.tensors, size) for t in trows)
    saved = sum(saved_size.values())
    inputs = numel(rows[0].input_shape) * size
    output = numel(rows[-1].output_shape) * size
    base = weights + buffers + state + (0 if -1 in saved_size else inputs) \
        + (0 if tensor[-1] in saved_size else output)
    # reverse sweep: what is alive while each layer runs its backward
    freed_after: dict[int, int] = {}
    for sid, lowest in keepers.items():
        freed_after[lowest] = freed_after.get(lowest, 0) + saved_size[sid]
    alive = saved
    grads_done = 0
    worst = 0
    for i in range(len(rows) - 1, -1, -1):
        if not needs[i]:
            continue
        grads_done += trows[i].trainable * size
        out_grad = numel(rows[i].output_shape) * size
        in_grad = numel(rows[i].input_shape) * size if has_input_grad[i] else 0
        worst = max(worst, alive + grads_done + out_grad + in_grad)
        alive -= freed_after.get(i, 0)
    sizes = [s for t in trows for s in t.sizes]
    step = weights + buffers + grads + state + step_transient(opt, sizes, size) + inputs + output
    return Memory(dtype, opt.name, weights, buffers, grads, state, saved, inputs, base + worst, step, "estimate",
                  NETWORK_ASSUMPTIONS + PEAK_ESTIMATE + (step_assumption(opt),))


def layer(layer: LayerCost, comparison: SeparableComparison | None = None,
          optimizer_name: str = "adam") -> tuple[Training, Training | None]:
    """A standalone layer taken as a layer inside a network (both gradients), and its separable pair."""
    one = network([layer], [(-1,)], optimizer_name, input_grad=True)
    if comparison is None:
        return one, None
    pair = network([comparison.depthwise, comparison.pointwise], [(-1,), (0,)], optimizer_name, input_grad=True)
    return one, pair


# --------------------------------------------------------------------------------------- memory limits

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str, option: str = "memory_limit") -> int:
    """`16GiB`, `16 GB`, `512MiB`, `1.5GiB` or a plain number of bytes -> bytes (GiB = 2^30, GB = 10^9)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise BadInput(f"expected a size like 16GiB, 16GB or 512MiB, got {text[:40]!r}", option)
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value < 1:
        raise BadInput(f"must be at least 1 byte, got {text[:40]!r}", option)
    if value > 2**80:
        raise BadInput(f"must be at most 1 YiB, got {text[:40]!r}", option)
    return int(value)


def largest_batch(peak_at: Callable[[int], int], limit: int, what: str = "") -> BatchFit:
    """The largest batch whose peak (`peak_at(batch)`, increasing in the batch) is at most `limit`; bad input when
    not even batch 1 fits. Evaluates few batches: an affine guess from batches 1 and 2 (peaks grow linearly with
    the batch, or faster once another layer dominates), then bisection with interpolation."""
    cache: dict[int, int] = {}

    def peak(b: int) -> int:
        if b not in cache:
            cache[b] = peak_at(b)
        return cache[b]

    if peak(1) > limit:
        raise BadInput(f"no batch fits in {limit:,} bytes: batch 1{what} already needs {peak(1):,} bytes at its peak",
                       "memory_limit")
    lo, hi = 1, None  # lo fits; hi (when known) does not
    if peak(2) > limit:
        hi = 2
    else:
        lo = 2
        slope = peak(2) - peak(1)
        guess = MAX_VALUE if slope <= 0 else min(MAX_VALUE, 1 + (limit - peak(1)) // slope)
        while hi is None:
            if guess <= lo:
                guess = lo + 1
            if guess > MAX_VALUE:
                return BatchFit(limit, lo, peak(lo), None)
            if peak(guess) <= limit:
                lo, guess = guess, min(MAX_VALUE + 1, 2 * guess)
            else:
                hi = guess
    while hi - lo > 1:
        a, b = peak(lo), peak(hi)
        mid = lo + (limit - a) * (hi - lo) // max(b - a, 1)
        if not lo < mid < hi:
            mid = (lo + hi) // 2
        if peak(mid) <= limit:
            lo = mid
            if mid + 1 < hi and peak(mid + 1) > limit:
                hi = mid + 1
        else:
            hi = mid
            if mid - 1 > lo and peak(mid - 1) <= limit:
                lo = mid - 1
    return BatchFit(limit, lo, peak(lo), peak(hi) if hi <= MAX_VALUE else None)
