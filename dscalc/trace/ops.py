"""The aten op registry, keyed by op *packet* (`aten.mm`, not `aten.mm.default`), so every overload - `out=`,
`.dtype`, ... - gets the same formula. Each op that multiplies and accumulates declares its MAC count here (a
convolution declares its engine record); ops that do no multiply-add are named with their kind so they are not
reported as uncounted. Registering an op twice is an error.

An op with no entry is decomposed by the tracer (torch's own decompositions, as FlopCounterMode does); only what
has no decomposition, or decomposes into no multiply-add, is listed as "uncounted" by name and count.

Conventions (README, "Conventions"): a MAC is one multiply-accumulate; bias additions are not MACs but are counted
beside them (`bias_adds`). Attention counts Q K^T and the weighted sum of V in full (a causal mask or a block
sparsity is not subtracted, as the math kernel computes and FlopCounterMode counts). Quantized ops count int8 MACs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dscalc.cost.layers import conv
from dscalc.cost.records import LayerCost

aten = torch.ops.aten


class Mismatch(RuntimeError):
    """An op the real kernel would refuse (its shapes do not fit) though the meta kernel lets it through: raised
    with the real kernel's words, before the op is counted. A RuntimeError, as the real one is, so a forward that
    catches the real error catches this one too."""


class NeedsValues(Exception):  # noqa: N818 - a signal, not an error of the user's
    """A formula needs tensor *values* that the meta device does not have (the lengths of a variable-length
    attention): the tracer runs the model for real instead."""


@dataclass(frozen=True)
class Count:
    """What one op costs: MACs, the bias additions beside them, a convolution's engine record, and the element
    type of its multiplies when it is fixed by the op (`int8` for quantized kernels)."""

    macs: int
    bias_adds: int = 0
    layer: LayerCost | None = None
    dtype: str = ""
    fixed_bytes: int = 0  # bytes read that no tensor argument shows (a quantized op's packed weights)


@dataclass(frozen=True)
class Call:
    """One dispatched op: its arguments bound to the names of its schema, and its output."""

    func: Any
    args: tuple
    kwargs: dict
    out: Any

    def arg(self, name: str, index: int, default: Any = None) -> Any:
        """The argument `name` (position `index` in the schema), however it was passed."""
        if name in self.kwargs:
            return self.kwargs[name]
        if index < len(self.args):
            return self.args[index]
        return default

    @property
    def first(self) -> Any:
        return self.out[0] if isinstance(self.out, (tuple, list)) else self.out


Formula = Callable[[Call], "Count | int"]


@dataclass(frozen=True)
class OpHandler:
    kind: str  # one of dscalc.cost.opkinds.OP_KINDS (the tracer refines it by the module that issued the op)
    macs: Formula | None = None


#: op packet (or higher-order op) -> handler
class _Registry(dict[Any, "OpHandler"]):
    """The op registry. The ops of a namespace that only a costly import defines (torch_attn::, from
    torch.nn.attention.varlen, which imports torch._dynamo) get their formulas when an op of it is first asked
    for: a model that calls them has imported that module; one that does not never pays for it."""

    def _ready(self, key: Any) -> None:
        if LATER and str(key).partition(".")[0] in LATER:
            for name, kind, fn in LATER.pop(str(key).partition(".")[0]):
                register(name, kind=kind, namespace=str(key).partition(".")[0])(fn)

    def __contains__(self, key: object) -> bool:
        self._ready(key)
        return super().__contains__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._ready(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._ready(key)
        return super().__getitem__(key)


REGISTRY: dict[Any, OpHandler] = _Registry()
#: namespace -> (op name, kind, formula) registered when an op of that namespace is first looked up
LATER: dict[str, list[tuple[str, str, Any]]] = {}


def later(name: str, *, kind: str, namespace: str) -> Callable[[Any], Any]:
    """`register`, deferred until the registry is asked for an op of `namespace` (see _Registry)."""

    def wrap(fn: Any) -> Any:
        LATER.setdefault(namespace, []).append((name, kind, fn))
        return fn

    return wrap

Check = Callable[[tuple, dict], None]

#: op packet -> the shape checks its real kernel makes and its meta kernel does not (raising Mismatch)
CHECKS: dict[Any, Check] = {}


def check_for(func: Any) -> Check | None:
    return CHECKS.get(key_of(func))


def checks(*names: str) -> Callable[[Check], Check]:
    """Decorator: the real kernel's shape checks of these ops (names in aten; a name this build lacks is skipped)."""

    def wrap(fn: Check) -> Check:
        for name in names:
            op = packet(name)
            if op is not None:
                if op in CHECKS:
                    raise RuntimeError(f"{op} has two checks")
                CHECKS[op] = fn
        return fn

    return wrap


def packet(name: str, namespace: str = "aten") -> Any | None:
    """The op packet `namespace::name`, or None where this torch build does not have it."""
    try:
        ns = getattr(torch.ops, namespace)
        return getattr(ns, name)
    except (AttributeError, RuntimeError):
        return None


def key_of(func: Any) -> Any:
    """The registry key of a dispatched op: its packet (higher-order ops are their own key)."""
    return getattr(func, "overloadpacket", func)


def handler_for(func: Any) -> OpHandler | None:
    return REGISTRY.get(key_of(func))


def register(*names: str | Any, kind: str, namespace: str = "aten") -> Callable[[Formula | None], Formula | None]:
    """Decorator: the MAC formula of these ops (names in `namespace`, or packets). A name this torch build lacks
    is skipped; an overload (`aten.mm.default`) is refused - formulas are per packet; a duplicate is an error."""

    def wrap(fn: Formula | None) -> Formula | None:
        for name in names:
            op = packet(name, namespace) if isinstance(name, str) else name
            if op is None:
                continue
            if isinstance(op, torch._ops.OpOverload):
                raise TypeError(f"register the packet {op.overloadpacket}, not the overload {op}")
            if op in REGISTRY:
                raise RuntimeError(f"{op} is registered twice")
            REGISTRY[op] = OpHandler(kind, fn)
        return fn

    return wrap


def shape_of(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _numel(t: Any) -> int:
    return math.prod(shape_of(t)) if isinstance(t, torch.Tensor) else 0


# --- convolutions -------------------------------------------------------------------------------------------------

def _conv_record(x: Any, w: Any, bias: bool, stride: Any, padding: Any, dilation: Any, transposed: bool,
                 output_padding: Any, groups: int, dtype: str = "") -> Count:
    """The engine's cost of a traced convolution: its MACs, a record `separable_of` understands, and one bias
    addition per output element when there is a bias."""
    xs, ws = shape_of(x), shape_of(w)
    if len(xs) == len(ws) - 1:  # unbatched input
        xs = (1, *xs)
    dims = len(ws) - 2

    def per(v: Any, d: int = 1) -> tuple[int, ...]:
        if v is None:
            return (d,) * dims
        values = tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),)
        return values * dims if len(values) == 1 else values

    cout = ws[1] * groups if transposed else ws[0]
    layer = conv(xs[1], cout, ws[2:], xs[2:], batch=xs[0], stride=per(stride), padding=per(padding, 0),
                 dilation=per(dilation), groups=int(groups), bias=bias, transposed=bool(transposed),
                 output_padding=per(output_padding, 0) if transposed else 0)
    adds = math.prod(layer.output_shape) if bias else 0
    return Count(layer.macs, adds, layer, dtype)


@register("convolution", "_convolution", "convolution_overrideable", kind="conv")
def _convolution(c: Call) -> Count:
    # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...)
    bias = c.arg("bias", 2)
    return _conv_record(c.arg("input", 0), c.arg("weight", 1), bias is not None, c.arg("stride", 3),
                        c.arg("padding", 4), c.arg("dilation", 5), bool(c.arg("transposed", 6)),
                        c.arg("output_padding", 7), int(c.arg("groups", 8)))


@register("cudnn_convolution", "miopen_convolution", kind="conv")
def _cudnn_convolution(c: Call) -> Count:
    # cudnn_convolution(self, weight, padding, stride, dilation, groups, ...); miopen has a bias after weight
    miopen = "miopen" in str(c.func)
    shift = 1 if miopen else 0
    bias = c.arg("bias", 2) if miopen else None
    return _conv_record(c.args[0], c.args[1], bias is not None, c.arg("stride", 3 + shift), c.arg("padding", 2 + shift),
                        c.arg("dilation", 4 + shift), False, None, int(c.arg("groups", 5 + shift)))


@register("cudnn_convolution_transpose", kind="conv")
def _cudnn_convolution_transpose(c: Call) -> Count:
    # (self, weight, padding, output_padding, stride, dilation, groups, ...)
    return _conv_record(c.args[0], c.args[1], False, c.arg("stride", 4), c.arg("padding", 2), c.arg("dilation", 5),
                        True, c.arg("output_padding", 3), int(c.arg("groups", 6)))


@register("mkldnn_convolution", kind="conv")
def _mkldnn_convolution(c: Call) -> Count:
    # (self, weight, bias, padding, stride, dilation, groups)
    return _conv_record(c.args[0], c.args[1], c.arg("bias", 2) is not None, c.arg("stride", 4), c.arg("padding", 3),
                        c.arg("dilation", 5), False, None, int(c.arg("groups", 6)))


@register("_slow_conv2d_forward", "slow_conv3d_forward", "slow_conv3d", "thnn_conv2d", kind="conv")
def _slow_conv(c: Call) -> Count:
    # (self, weight, kernel_size, bias, stride, padding)
    return _conv_record(c.args[0], c.args[1], c.arg("bias", 3) is not None, c.arg("stride", 4), c.arg("padding", 5),
                        None, False, None, 1)


@register("slow_conv_dilated2d", "slow_conv_dilated3d", "_conv_depthwise2d", "conv_depthwise3d", kind="conv")
def _dilated_or_depthwise(c: Call) -> Count:
    # (self, weight, kernel_size, bias, stride, padding, dilation); depthwise: groups = input channels
    x, w = c.args[0], c.args[1]
    depthwise = "depthwise" in str(c.func)
    groups = shape_of(x)[-len(shape_of(w)) + 1] if depthwise else 1
    return _conv_record(x, w, c.arg("bias", 3) is not None, c.arg("stride", 4), c.arg("padding", 5),
                        c.arg("dilation", 6), False, None, groups)


@register("slow_conv_transpose2d", "slow_conv_transpose3d", kind="conv")
def _slow_conv_transpose(c: Call) -> Count:
    # (self, weight, kernel_size, bias, stride, padding, output_padding, dilation); weight (C_in, C_out, *k)
    return _conv_record(c.args[0], c.args[1], c.arg("bias", 3) is not None, c.arg("stride", 4), c.arg("padding", 5),
                        c.arg("dilation", 7), True, c.arg("output_padding", 6), 1)


@register("convolution_backward", kind="conv")
def _convolution_backward(c: Call) -> Count:
    """grad-input MACs = grad-weight MACs = the forward's, each counted when `output_mask` asks for it (grouped
    convs included: every forward multiply has one partner in each gradient - DESIGN.md, training)."""
    # (grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask)
    forward = _conv_record(c.args[1], c.args[2], False, c.arg("stride", 4), c.arg("padding", 5), c.arg("dilation", 6),
                           bool(c.arg("transposed", 7)), c.arg("output_padding", 8), int(c.arg("groups", 9)))
    mask = c.arg("output_mask", 10, [True, True, True])
    return Count(forward.macs * (int(bool(mask[0])) + int(bool(mask[1]))))


# --- the real kernels' shape checks that the meta kernels skip (words as the CPU kernels write them) ----------------

def _sizes(t: Any) -> str:
    return str(list(shape_of(t)))


def _x(t: Any) -> str:
    return "x".join(str(s) for s in shape_of(t))


@checks("convolution", "_convolution", "convolution_overrideable")
def _check_convolution(args: tuple, kwargs: dict) -> None:
    """aten/src/ATen/native/Convolution.cpp, check_shape_forward: weight divisible by groups, the input's channels,
    the bias' length (the meta kernel checks neither for a transposed conv, nor divisibility, nor the bias)."""
    c = Call(None, args, kwargs, None)
    x, w, bias = c.arg("input", 0), c.arg("weight", 1), c.arg("bias", 2)
    transposed, groups = bool(c.arg("transposed", 6)), int(c.arg("groups", 8))
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)) or x.dim() != w.dim() or groups <= 0:
        return  # the meta kernel refuses these with the real words
    ws = shape_of(w)
    if ws[0] < groups:
        raise Mismatch(f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
                       f"weight of size {_sizes(w)} instead")
    if ws[0] % groups:
        raise Mismatch(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but got "
                       f"weight of size [{_sizes(w)}] instead")
    channels = shape_of(x)[1]
    if not transposed:
        if channels != ws[1] * groups:
            raise Mismatch(f"Given groups={groups}, weight of size {_sizes(w)}, expected input{_sizes(x)} to have "
                           f"{ws[1] * groups} channels, but got {channels} channels instead")
        if isinstance(bias, torch.Tensor) and (bias.dim() != 1 or bias.numel() != ws[0]):
            raise Mismatch(f"Given weight of size {_sizes(w)}, expected bias to be 1-dimensional with {ws[0]} "
                           f"elements, but got bias of size {_sizes(bias)} instead")
        return
    if channels != ws[0]:
        raise Mismatch(f"Given transposed=1, weight of size {_sizes(w)}, expected input{_sizes(x)} to have {ws[0]} "
                       f"channels, but got {channels} channels instead")
    if isinstance(bias, torch.Tensor) and (bias.dim() != 1 or bias.numel() != ws[1] * groups):
        raise Mismatch(f"Given transposed=1, weight of size {_sizes(w)}, expected bias to be 1-dimensional with "
                       f"{ws[1] * groups} elements, but got bias of size {_sizes(bias)} instead")


def _check_product(a: Any, b: Any) -> None:
    """mm's inner dimensions (the meta kernel says 'a and b must have same reduction dim')."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() == 2 and b.dim() == 2 \
            and a.shape[1] != b.shape[0]:
        raise Mismatch(f"mat1 and mat2 shapes cannot be multiplied ({_x(a)} and {_x(b)})")


@checks("mm")
def _check_mm(args: tuple, kwargs: dict) -> None:
    _check_product(args[0], kwargs.get("mat2", args[1] if len(args) > 1 else None))


@checks("addmm", "_addmm_activation")
def _check_addmm(args: tuple, kwargs: dict) -> None:
    c = Call(None, args, kwargs, None)
    _check_product(c.arg("mat1", 1), c.arg("mat2", 2))


def _check_batched(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() == 3 and b.dim() == 3 \
            and (a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]):
        raise Mismatch(f"Expected size for first two dimensions of batch2 tensor to be: [{a.shape[0]}, {a.shape[2]}] "
                       f"but got: [{b.shape[0]}, {b.shape[1]}].")


@checks("bmm")
def _check_bmm(args: tuple, kwargs: dict) -> None:
    _check_batched(args[0], kwargs.get("mat2", args[1] if len(args) > 1 else None))


@checks("baddbmm")
def _check_baddbmm(args: tuple, kwargs: dict) -> None:
    c = Call(None, args, kwargs, None)
    _check_batched(c.arg("batch1", 1), c.arg("batch2", 2))


def _check_vector(shown: str, mat: Any, vec: Any) -> None:
    if isinstance(mat, torch.Tensor) and isinstance(vec, torch.Tensor) and mat.dim() == 2 and vec.dim() == 1 \
            and mat.shape[1] != vec.shape[0]:
        raise Mismatch(f"size mismatch, got input ({shown}), mat ({_x(mat)}), vec ({_x(vec)})")


@checks("mv")
def _check_mv(args: tuple, kwargs: dict) -> None:
    c = Call(None, args, kwargs, None)
    mat = c.arg("self", 0)
    if isinstance(mat, torch.Tensor) and mat.dim() == 2:
        _check_vector(str(mat.shape[0]), mat, c.arg("vec", 1))


@checks("addmv")
def _check_addmv(args: tuple, kwargs: dict) -> None:
    c = Call(None, args, kwargs, None)
    start = c.arg("self", 0)
    if isinstance(start, torch.Tensor):
        _check_vector(_x(start), c.arg("mat", 1), c.arg("vec", 2))


@checks("dot", "vdot")
def _check_dot(args: tuple, kwargs: dict) -> None:
    a, b = args[0], kwargs.get("tensor", args[1] if len(args) > 1 else None)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.numel() != b.numel():
        raise Mismatch(f"inconsistent tensor size, expected tensor [{a.numel()}] and src [{b.numel()}] to have the "
                       f"same number of elements, but got {a.numel()} and {b.numel()} elements respectively")


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """torch's infer_size: the broadcast shape of two shapes, or Mismatch in the real kernel's words."""
    ndim = max(len(a), len(b))
    out = []
    for i in range(ndim - 1, -1, -1):
        offset = ndim - 1 - i
        sa = a[len(a) - 1 - offset] if len(a) - 1 - offset >= 0 else 1
        sb = b[len(b) - 1 - offset] if len(b) - 1 - offset >= 0 else 1
        if sa != sb and sa != 1 and sb != 1:
            raise Mismatch(f"The size of tensor a ({sa}) must match the size of tensor b ({sb}) at non-singleton "
                           f"dimension {i}")
        out.append(sa if sb == 1 else sb)
    return tuple(reversed(out))


#: elementwise ops whose tensor operands broadcast together (the meta kernels' refs word it differently)
BROADCASTING = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "rsub", "where", "minimum", "maximum",
                "eq", "ne", "lt", "gt", "le", "ge", "pow", "addcmul", "addcmul_", "addcdiv", "addcdiv_", "atan2",
                "fmod", "remainder", "bitwise_and", "bitwise_or", "logical_and", "logical_or", "hypot", "copysign")


@checks(*BROADCASTING)
def _check_broadcast(args: tuple, kwargs: dict) -> None:
    shapes = [shape_of(t) for t in args if isinstance(t, torch.Tensor)]
    if len(shapes) < 2:
        return
    out = shapes[0]
    for s in shapes[1:]:
        out = broadcast(out, s)


# --- matrix products ----------------------------------------------------------------------------------------------

@register("mm", "_int_mm", kind="matmul")
def _mm(c: Call) -> Count:
    (m, k), (_, n) = shape_of(c.args[0]), shape_of(c.args[1])
    return Count(m * k * n, dtype="int8" if "_int_mm" in str(c.func) else "")


@register("_scaled_mm", kind="matmul")
def _scaled_mm(c: Call) -> Count:
    (m, k), (_, n) = shape_of(c.args[0]), shape_of(c.args[1])
    return Count(m * k * n, dtype=str(c.args[0].dtype).replace("torch.", ""))


def _addmm_like(c: Call) -> Count:
    """addmm(self, mat1, mat2): the product, and one addition of `self` per output element (the bias)."""
    (m, k), (_, n) = shape_of(c.args[1]), shape_of(c.args[2])
    beta = c.arg("beta", 3, 1)
    return Count(m * k * n, m * n if beta != 0 else 0)


register("addmm", "_addmm_activation", kind="linear")(_addmm_like)


@register("bmm", kind="matmul")
def _bmm(c: Call) -> Count:
    (b, m, k), (_, _, n) = shape_of(c.args[0]), shape_of(c.args[1])
    return Count(b * m * k * n)


@register("baddbmm", kind="matmul")
def _baddbmm(c: Call) -> Count:
    (b, m, k), (_, _, n) = shape_of(c.args[1]), shape_of(c.args[2])
    return Count(b * m * k * n, b * m * n if c.arg("beta", 3, 1) != 0 else 0)


@register("addbmm", kind="matmul")
def _addbmm(c: Call) -> Count:
    # sum over the batch of (m x k) @ (k x n), added to self (m x n)
    (b, m, k), (_, _, n) = shape_of(c.args[1]), shape_of(c.args[2])
    return Count(b * m * k * n, m * n if c.arg("beta", 3, 1) != 0 else 0)


@register("mv", kind="matmul")
def _mv(c: Call) -> Count:
    (m, k) = shape_of(c.args[0])
    return Count(m * k)


@register("addmv", kind="matmul")
def _addmv(c: Call) -> Count:
    (m, k) = shape_of(c.args[1])
    return Count(m * k, m if c.arg("beta", 3, 1) != 0 else 0)


@register("dot", "vdot", kind="matmul")
def _dot(c: Call) -> Count:
    return Count(_numel(c.args[0]))


@register("_weight_int8pack_mm", "_weight_int4pack_mm", "_weight_int4pack_mm_for_cpu", kind="linear")
def _weight_packed_mm(c: Call) -> Count:
    """Weight-only quantized linear: activations (m x k) times packed int8/int4 weights, output (m x n)."""
    m, k = shape_of(c.args[0])
    n = shape_of(c.first)[-1]
    return Count(m * k * n, dtype="int8")


@register("_trilinear", kind="linear")
def _trilinear(c: Call) -> Count:
    """nn.Bilinear's op: y[b, o] = sum_ij x1[b, i] W[o, i, j] x2[b, j]. Convention (README): one MAC per term of that
    sum - batch x out x in1 x in2 for nn.Bilinear - the size of the space the three operands span once each is
    unsqueezed at its `expand` dimensions (the three-way product is one multiply-accumulate of x1_i x2_j into
    W_oij's output, as the closed form x1^T W x2 is written)."""
    # (i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)
    shapes = []
    for t, expand in zip(c.args[:3], c.args[3:6]):
        s = list(shape_of(t))
        for d in sorted(int(e) for e in expand):
            s.insert(d, 1)
        shapes.append(tuple(s))
    space = broadcast(broadcast(shapes[0], shapes[1]), shapes[2])
    return Count(math.prod(space))


# --- attention ----------------------------------------------------------------------------------------------------

def _attention(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> int:
    """Q K^T and the weighted sum of V, in layout (..., heads, seq, dim): prod(q[:-2]) query heads (key/value
    heads may be fewer: grouped-query attention broadcasts them), q[-2] x k[-2] scores of q[-1] MACs each, then
    q[-2] x k[-2] weights applied to v[-1] values."""
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


@register("_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
          "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
          "_scaled_dot_product_fused_attention_overrideable", kind="attention")
def _sdpa(c: Call) -> Count:
    """The fused SDPA kernels: query (B, H, L, E), key (B, Hkv, S, E), value (B, Hkv, S, Ev)."""
    return Count(_attention(shape_of(c.args[0]), shape_of(c.args[1]), shape_of(c.args[2])))


def _heads_first(t: Any) -> tuple[int, ...]:
    """(B, S, H, D) -> (B, H, S, D): the layout of the flash and efficient kernels, turned into SDPA's."""
    s = shape_of(t)
    return (*s[:-3], s[-2], s[-3], s[-1])


def _lengths(offsets: Any, what: str) -> list[int]:
    """Per-sequence lengths from cumulative offsets [0, l0, l0+l1, ...] - their values, which meta has not."""
    if offsets.device.type == "meta" or type(offsets).__name__ == "FakeTensor":
        raise NeedsValues(f"{what}: the lengths of a variable-length batch are tensor values")
    values = [int(v) for v in offsets.tolist()]
    return [b - a for a, b in zip(values, values[1:])]


def _varlen(q: Any, k: Any, v: Any, cum_q: Any, cum_k: Any, what: str) -> int:
    """Variable-length attention, packed (total tokens, heads, dim): sum over sequences of L_i x S_i products."""
    (_, hq, e), (_, _, ev) = shape_of(q)[-3:], shape_of(v)[-3:]
    return sum(hq * lq * lk * (e + ev) for lq, lk in zip(_lengths(cum_q, what), _lengths(cum_k, what)))


@register("_flash_attention_forward", kind="attention")
def _flash_forward(c: Call) -> Count:
    """Layout (B, S, H, D) - heads after the sequence - or, with `cum_seq_q`/`cum_seq_k`, packed variable-length
    sequences (total, H, D)."""
    q, k, v = c.args[0], c.args[1], c.args[2]
    cum_q, cum_k = c.arg("cum_seq_q", 3), c.arg("cum_seq_k", 4)
    if cum_q is not None:
        return Count(_varlen(q, k, v, cum_q, cum_k, "aten._flash_attention_forward"))
    return Count(_attention(_heads_first(q), _heads_first(k), _heads_first(v)))


@register("_efficient_attention_forward", kind="attention")
def _efficient_forward(c: Call) -> Count:
    """Layout (B, S, H, D); variable-length: B = 1 with `cu_seqlens_q`/`cu_seqlens_k`."""
    q, k, v = c.args[0], c.args[1], c.args[2]
    cum_q, cum_k = c.arg("cu_seqlens_q", 4), c.arg("cu_seqlens_k", 5)
    if cum_q is not None:
        return Count(_varlen(q, k, v, cum_q, cum_k, "aten._efficient_attention_forward"))
    return Count(_attention(_heads_first(q), _heads_first(k), _heads_first(v)))


@register("_cudnn_attention_forward", kind="attention")
def _cudnn_forward(c: Call) -> Count:
    """Layout (B, H, S, D); variable-length with `cum_seq_q`/`cum_seq_k` (packed (total, H, D))."""
    q, k, v = c.args[0], c.args[1], c.args[2]
    cum_q, cum_k = c.arg("cum_seq_q", 4), c.arg("cum_seq_k", 5)
    if cum_q is not None:
        return Count(_varlen(q, k, v, cum_q, cum_k, "aten._cudnn_attention_forward"))
    return Count(_attention(shape_of(q), shape_of(k), shape_of(v)))


def _attention_backward(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> int:
    """Backward of attention: grad V (weights^T grad_out), grad weights (grad_out V^T), grad Q (grad_scores K) and
    grad K (grad_scores^T Q) - twice the forward's two products."""
    return 2 * _attention(q, k, v)


@register("_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
          "_scaled_dot_product_cudnn_attention_backward",
          "_scaled_dot_product_fused_attention_overrideable_backward",
          "_scaled_dot_product_flash_attention_for_cpu_backward", kind="attention")
def _sdpa_backward(c: Call) -> Count:
    # (grad_out, query, key, value, ...), layout (B, H, S, D)
    return Count(_attention_backward(shape_of(c.args[1]), shape_of(c.args[2]), shape_of(c.args[3])))


@register("_flash_attention_backward", kind="attention")
def _flash_backward(c: Call) -> Count:
    # (grad_out, query, key, value, out, logsumexp, cum_seq_q, cum_seq_k, ...), layout (B, S, H, D) or packed
    q, k, v = c.args[1], c.args[2], c.args[3]
    cum_q, cum_k = c.arg("cum_seq_q", 6), c.arg("cum_seq_k", 7)
    if cum_q is not None:
        return Count(2 * _varlen(q, k, v, cum_q, cum_k, "aten._flash_attention_backward"))
    return Count(_attention_backward(_heads_first(q), _heads_first(k), _heads_first(v)))


@register("_efficient_attention_backward", kind="attention")
def _efficient_backward(c: Call) -> Count:
    # (grad_out, query, key, value, bias, out, cu_seqlens_q, cu_seqlens_k, ...), layout (B, S, H, D)
    q, k, v = c.args[1], c.args[2], c.args[3]
    cum_q, cum_k = c.arg("cu_seqlens_q", 6), c.arg("cu_seqlens_k", 7)
    if cum_q is not None:
        return Count(2 * _varlen(q, k, v, cum_q, cum_k, "aten._efficient_attention_backward"))
    return Count(_attention_backward(_heads_first(q), _heads_first(k), _heads_first(v)))


def _flex_forward(c: Call) -> Count:
    """flex_attention (query, key, value, score_mod, block_mask, ...), layout (B, H, L, E): the full product - a
    block mask's sparsity is not subtracted (FlopCounterMode counts it the same way unless given a hint)."""
    return Count(_attention(shape_of(c.args[0]), shape_of(c.args[1]), shape_of(c.args[2])))


def _flex_backward(c: Call) -> Count:
    # (query, key, value, out, logsumexp, grad_out, ...)
    return Count(_attention_backward(shape_of(c.args[0]), shape_of(c.args[1]), shape_of(c.args[2])))


try:  # higher-order ops: registered as themselves
    from torch._higher_order_ops.flex_attention import flex_attention, flex_attention_backward

    register(flex_attention, kind="attention")(_flex_forward)
    register(flex_attention_backward, kind="attention")(_flex_backward)
except ImportError:  # a torch without flex attention
    pass

@later("_varlen_attn", kind="attention", namespace="torch_attn")
def _varlen_attn(c: Call) -> Count:
    """torch.nn.attention.varlen_attn: packed (total, H, D) sequences delimited by cu_seq_q / cu_seq_k."""
    q, k, v, cum_q = c.args[0], c.args[1], c.args[2], c.args[3]
    cum_k = c.arg("cu_seq_k", 4)
    return Count(_varlen(q, k, v, cum_q, cum_k if cum_k is not None else cum_q, "torch_attn._varlen_attn"))


@later("_varlen_attn_out", kind="attention", namespace="torch_attn")
def _varlen_attn_out(c: Call) -> Count:
    q, k, v, cum_q = c.args[1], c.args[2], c.args[3], c.args[4]
    cum_k = c.arg("cu_seq_k", 5)
    return Count(_varlen(q, k, v, cum_q, cum_k if cum_k is not None else cum_q, "torch_attn._varlen_attn_out"))


@later("_varlen_attn_backward", kind="attention", namespace="torch_attn")
def _varlen_attn_backward(c: Call) -> Count:
    # (grad_out, query, key, value, out, lse, cu_seq_q, cu_seq_k, ...)
    q, k, v = c.args[1], c.args[2], c.args[3]
    return Count(2 * _varlen(q, k, v, c.args[6], c.args[7], "torch_attn._varlen_attn_backward"))


@register("_native_multi_head_attention", kind="attention")
def _native_mha(c: Call) -> Count:
    """nn.MultiheadAttention's fused inference path: Q/K/V projections, attention, output projection.
    (query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias, ...), batch first."""
    q, k = shape_of(c.args[0]), shape_of(c.args[1])
    e, heads = int(c.args[3]), int(c.args[4])
    b, lq, lk = (q[0] if len(q) == 3 else 1), q[-2], k[-2]
    projections = b * lq * e * e + 2 * b * lk * e * e + b * lq * e * e
    attention = b * heads * lq * lk * 2 * (e // heads)
    bias = c.args[6] is not None
    return Count(projections + attention, (b * lq * e * 2 + 2 * b * lk * e) if bias else 0)


@register("_transformer_encoder_layer_fwd", kind="attention")
def _encoder_layer(c: Call) -> Count:
    """nn.TransformerEncoderLayer's fused inference path: self-attention (as above) and the two FFN linears.
    (src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu, norm_first, eps,
    norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ...)"""
    x = shape_of(c.args[0])
    e, heads = int(c.args[1]), int(c.args[2])
    tokens = math.prod(x[:-1])
    b, length = (x[0] if len(x) == 3 else 1), x[-2]
    ffn = shape_of(c.args[14])[0]
    macs = 4 * tokens * e * e + b * heads * length * length * 2 * (e // heads) + 2 * tokens * e * ffn
    return Count(macs, tokens * (4 * e + ffn + e))


# --- recurrent layers ---------------------------------------------------------------------------------------------

@register("mkldnn_rnn_layer", kind="recurrent")
def _mkldnn_rnn_layer(c: Call) -> Count:
    """oneDNN's fused LSTM layer (the CPU path of nn.LSTM): per step, the input projection (gates x input) and the
    hidden projection (gates x hidden). (input, weight_ih, weight_hh, bias_ih, bias_hh, hx, cx, reverse,
    batch_sizes, mode, hidden_size, num_layers, has_biases, bidirectional, batch_first, train)"""
    x = shape_of(c.args[0])
    steps_batch = math.prod(x[:-1])
    w_ih, w_hh = shape_of(c.args[1]), shape_of(c.args[2])
    gates = w_ih[0]
    return Count(steps_batch * (math.prod(w_ih) + math.prod(w_hh)), 2 * steps_batch * gates if c.args[12] else 0)


# --- quantized kernels (torch.ao): int8 MACs, weights unpacked from their packed form ------------------------------

def _unpack(packed: Any) -> tuple[Any, Any]:
    w, b = packed.unpack()
    return w, b


def _quantized_linear(c: Call) -> Count:
    """quantized::linear* (x, packed_weight, ...): x (..., in) times an int8 weight (out, in)."""
    w, b = _unpack(c.args[1])
    tokens = math.prod(shape_of(c.args[0])[:-1])
    out, cin = shape_of(w)
    return Count(tokens * cin * out, tokens * out if b is not None else 0, dtype="int8",
                 fixed_bytes=_packed_bytes(w, b))


def _packed_bytes(w: Any, b: Any) -> int:
    """The bytes of a packed weight and its bias at their real widths (int8 weight, float bias)."""
    return _numel(w) * w.element_size() + (_numel(b) * b.element_size() if b is not None else 0)


register("linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic", kind="linear",
         namespace="quantized")(_quantized_linear)


def _quantized_conv(c: Call) -> Count:
    """quantized::conv*d[_relu] (qx, packed_weight, scale, zero_point): the engine's record, int8 MACs."""
    packed = c.args[1]
    w, b = _unpack(packed)
    transposed = bool(packed.transpose())
    count = _conv_record(c.args[0], w, b is not None, packed.stride(), packed.padding(), packed.dilation(),
                         transposed, packed.output_padding() if transposed else None, int(packed.groups()),
                         dtype="int8")
    return Count(count.macs, count.bias_adds, count.layer, "int8", _packed_bytes(w, b))


register("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu", "conv_transpose1d",
         "conv_transpose2d", "conv_transpose3d", kind="conv", namespace="quantized")(_quantized_conv)


# --- ops that do no multiply-add (named with their kind; never listed as uncounted) ---------------------------------

register("_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
         "_native_batch_norm_legit_functional", "cudnn_batch_norm", "miopen_batch_norm", "_batch_norm_with_update",
         "_batch_norm_no_update", kind="batchnorm")(None)  # an InstanceNorm runs these too: the tracer says so
register("native_layer_norm", kind="layernorm")(None)
register("native_group_norm", kind="groupnorm")(None)
register("_fused_rms_norm", kind="rmsnorm")(None)
register("max_pool1d", "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
         "avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
         "mean", "mkldnn_max_pool2d", "max_pool2d", "adaptive_avg_pool1d", kind="pooling")(None)
register("add", "add_", "mul", "mul_", "relu", "relu_", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_",
         "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "silu", "silu_", "gelu", "gelu_", "clamp_min",
         "clamp_min_", "clamp", "clamp_", "div", "div_", "sub", "sub_", "_softmax", "tanh", "tanh_", "_safe_softmax",
         "masked_fill", "masked_fill_", "exp", "rsqrt", "sqrt", "pow", "neg", "where", "eq", "ne", "erf",
         "_log_softmax", "leaky_relu", "leaky_relu_", "elu", "elu_", "mish", "abs", "log", "lt", "gt", "le", "ge",
         "minimum", "maximum", "addcmul", "addcmul_", "sum", "rsub", "softplus", "cos", "sin", "reciprocal",
         kind="elementwise")(None)

#: ops that move or reshape data and compute nothing: neither counted nor listed as uncounted
SHAPE_OPS = {
    "view", "_unsafe_view", "reshape", "flatten", "t", "transpose", "permute", "expand", "clone", "cat",
    "split", "split_with_sizes", "slice", "select", "unsqueeze", "squeeze", "detach", "alias", "_to_copy",
    "copy_", "empty", "zeros", "ones", "constant_pad_nd", "contiguous", "chunk", "stack", "unbind", "native_dropout",
    "dropout", "empty_like", "zeros_like", "ones_like", "new_empty", "new_zeros", "lift_fresh", "as_strided",
    "fill_", "zero_", "_reshape_alias", "narrow", "index", "roll", "pad", "channel_shuffle", "pixel_shuffle",
    "flip", "arange", "full", "repeat", "t_", "view_as", "detach_", "empty_strided", "lift_fresh_copy",
    "unsafe_split", "unsafe_chunk", "_unsafe_index", "expand_as", "new_ones", "new_full", "scalar_tensor",
    "_local_scalar_dense", "unfold", "movedim", "swapaxes", "rand", "randn", "normal_", "uniform_", "random_",
    "bernoulli_", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_contiguous", "dim", "size",
    "stride", "numel", "storage_offset", "item", "_assert_async", "_assert_tensor_metadata", "resize_", "as_strided_",
}

#: ops in torch.utils.flop_counter's registry that dscalc does not count, and why (tests/test_op_coverage.py walks
#: that registry). Empty on torch 2.14.1: every op it has a formula for has one here. (flex_attention is
#: registered, but its eager CPU path calls torch.compile, which does not run under a dispatch mode: it is counted
#: where its higher-order op reaches the tracer, as in an exported graph.)
NOT_COUNTED: dict[str, str] = {}

#: the shape ops that copy their data (each reads its inputs and writes a new tensor): no count includes them, a
#: latency prediction must (ShuffleNet's cat and contiguous transpose, SqueezeNet's cat; `Trace.copies`)
COPIES = {"cat", "clone", "stack", "_to_copy", "copy_", "constant_pad_nd", "repeat", "roll", "flip", "index",
          "_unsafe_index", "pad", "channel_shuffle", "pixel_shuffle", "lift_fresh_copy"}

#: the pooling ops whose second argument is their window (kernel_size); the others (adaptive, mean) reduce whole maps
_WINDOWED = {"max_pool1d", "max_pool2d", "max_pool2d_with_indices", "max_pool3d_with_indices", "mkldnn_max_pool2d",
             "avg_pool1d", "avg_pool2d", "avg_pool3d"}


def pool_window(name: str, args: tuple, io: tuple[tuple[int, ...], ...]) -> int:
    """A pooling op's window in elements: its kernel_size's product, or for an adaptive pool or a mean the input
    elements per output element (a global pool: the whole map); 0 where it cannot be told."""
    if name in _WINDOWED and len(args) > 1:
        k = args[1]
        sizes = [int(x) for x in k] if isinstance(k, (list, tuple)) else [int(k)]
        dims = max(len(io[0]) - 2, 1) if io and io[0] else len(sizes)
        if len(sizes) == 1:
            sizes *= dims
        return math.prod(sizes)
    if len(io) == 2 and io[0] and io[1]:
        out = math.prod(io[1])
        return -(-math.prod(io[0]) // out) if out else 0
    return 0
