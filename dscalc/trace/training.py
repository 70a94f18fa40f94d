"""The training cost of a real model, taken from autograd itself: the model runs one forward and one backward on
fake CPU tensors (meta storage - nothing is allocated - presented as CPU tensors, so torch makes its CPU kernel
choices, e.g. flash attention, exactly as a real CPU run would), while

* a dispatch mode records every op: forward MACs (the op registry, `trace.ops`), and in backward the gradient ops
  autograd actually runs - `convolution_backward` with its output mask, the matrix products of each matmul node,
  fused attention and RNN kernels - attributed to the module that created the autograd node;
* `torch.autograd.graph.saved_tensors_hooks` sees every tensor autograd keeps for backward (each storage once,
  parameters and buffers excluded; the same bytes a real CPU training-mode forward keeps);
* every storage's lifetime is followed (allocated by an op, freed when torch frees it), giving the exact peak of
  live tensor bytes during forward + backward.

The model is never changed: it runs as torch.func.functional_call runs it, on fake copies of its parameters (their
requires_grad kept: a frozen parameter gets no gradient) and buffers - kept in place through backward, where a
checkpointed block runs its forward again; its training flags are set for the run and restored; the hooks and
modes exist only inside `trace_training()`.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dscalc.cost import training as T
from dscalc.cost.layers import conv
from dscalc.errors import BadInput, RuntimeFailure
from dscalc.trace import tracer
from dscalc.trace.ops import Call, Count, handler_for
from dscalc.trace.summary import MAC_KINDS  # the op kinds whose MACs count: one list for inference and training

aten = torch.ops.aten

#: autograd nodes of a matrix product, and which of their inputs are the two factors
MATMUL_NODES = {"MmBackward0": (0, 1), "BmmBackward0": (0, 1), "AddmmBackward0": (1, 2), "BaddbmmBackward0": (1, 2)}
MATMUL_OPS = {aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default}
#: nodes that pass a gradient on unchanged in value (views, casts): a factor reached through them is a parameter
PASS_NODES = frozenset({
    "TBackward0", "ViewBackward0", "UnsafeViewBackward0", "PermuteBackward0", "TransposeBackward0",
    "TransposeBackward1", "ExpandBackward0", "ReshapeAliasBackward0", "AliasBackward0", "ToCopyBackward0",
    "SliceBackward0", "SelectBackward0", "UnsqueezeBackward0", "SqueezeBackward0", "SqueezeBackward1",
    "SqueezeBackward2", "SqueezeBackward3", "SqueezeBackward4", "CloneBackward0", "AsStridedBackward0",
    "SplitBackward0", "SplitWithSizesBackward0", "UnbindBackward0", "UnflattenBackward0", "NarrowBackward0",
})
ACCUMULATE = "torch::autograd::AccumulateGrad"
ATTENTION_BACKWARD = {getattr(aten, n).default for n in (
    "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward")
    if hasattr(aten, n)}
#: oneDNN's fused LSTM (the CPU's nn.LSTM); mode 2 = LSTM (4 gates)
RNN_FORWARD = aten.mkldnn_rnn_layer.default
RNN_BACKWARD = aten.mkldnn_rnn_layer_backward.default


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@dataclass
class _Module:
    """What one module did in the run (its own ops only, not its children's)."""

    order: int
    forward: int = 0
    grad_input: int = 0
    grad_weight: int = 0
    bias_adds: int = 0
    recompute: int = 0
    saved: int = 0
    input_grad: bool = False
    weight_grad: bool = False
    kinds: list[str] = field(default_factory=list)
    flop_counter_extra: int = 0  # what FlopCounterMode adds to the grouped convs' weight gradients ((g - 1) x)


@dataclass
class ModelTraining:
    """A traced training step: per-module rows (`cost.training.Training`), module types, and the run's facts."""

    training: T.Training
    types: dict[str, str]
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    peak_module: str = ""  # where the live bytes peaked
    peak_phase: str = ""  # forward or backward


class _Live:
    """Bytes of live tensor storage: each storage counted from the op that makes it until torch frees it."""

    def __init__(self) -> None:
        self.bytes = 0
        self.peak = 0
        self.where = ("", "")
        self.phase = "forward"
        self.module = ""
        self.keys: set[int] = set()

    def track(self, t: Any) -> None:
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            return
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.keys:
            return
        size = storage.nbytes()
        self.keys.add(key)
        self.bytes += size
        if self.bytes > self.peak:
            self.peak, self.where = self.bytes, (self.phase, self.module)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if key in self.keys:
            self.keys.discard(key)
            self.bytes -= size


class _Run:
    """The state of one traced training step."""

    def __init__(self, state_keys: set[int]) -> None:
        self.stack: list[str] = []
        self.modules: dict[str, _Module] = {}
        self.node_module: dict[Any, str] = {}  # autograd node -> the module whose forward created it
        self.node_macs: dict[Any, int] = {}  # matmul node -> MACs of its gradient products
        self.saved: dict[int, int] = {}  # storage key -> bytes (first keeper only)
        self.seen_nodes: set[Any] = set()
        self.state_keys = state_keys
        self.live = _Live()

    def module(self, name: str) -> _Module:
        if name not in self.modules:
            self.modules[name] = _Module(len(self.modules))
        return self.modules[name]

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    # ---------------------------------------------------------------------------------------- forward
    def forward_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        handler = handler_for(func)
        if func is RNN_FORWARD and handler is None:
            x, w_ih = _shape(args[0]), _shape(args[1])
            h = int(args[10])
            macs, kind = math.prod(x[:-1]) * w_ih[0] * (x[-1] + h), "recurrent"
        elif handler is not None and handler.kind in MAC_KINDS and handler.macs is not None:
            counted = handler.macs(Call(func, args, kwargs, out))
            if isinstance(counted, Count) and counted.layer is not None:
                macs, kind = counted.macs, counted.layer.kind
            else:
                macs = counted.macs if isinstance(counted, Count) else counted
                kind = "attention" if "attention" in func.__name__ else handler.kind
        else:
            return
        m = self.module(self.current)
        m.forward += macs
        m.kinds.append(kind)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.layout == torch.strided:
            storage = t.untyped_storage()
            key = storage._cdata
            if key not in self.state_keys and key not in self.saved:
                self.saved[key] = storage.nbytes()
                self.module(self.current).saved += storage.nbytes()
        return t

    def tag(self, out: Any) -> None:
        """Name every autograd node this call created after the module running it."""
        todo = [t.grad_fn for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.node_module:
                continue
            self.node_module[node] = self.current
            todo.extend(fn for fn, _ in node.next_functions if fn is not None)

    # --------------------------------------------------------------------------------------- backward
    def backward_op(self, node: Any, func: Any, args: tuple, out: Any) -> None:
        name = self.node_module.get(node, "")
        m = self.module(name)
        if node not in self.seen_nodes:  # which of its inputs autograd sends a gradient to
            self.seen_nodes.add(node)
            if any(_role(fn) == "input" for fn, _ in node.next_functions if fn is not None):
                m.input_grad = True
        if func is aten.convolution_backward.default:
            grad_out, x, w = args[0], args[1], args[2]
            stride, padding, dilation, transposed, output_padding, groups, mask = args[4:11]
            xs, ws = _shape(x), _shape(w)
            if len(xs) == len(ws) - 1:
                xs = (1, *xs)
            cout = ws[1] * groups if transposed else ws[0]
            layer = conv(xs[1], cout, ws[2:], xs[2:], batch=xs[0], stride=tuple(stride), padding=tuple(padding),
                         dilation=tuple(dilation), groups=int(groups), transposed=bool(transposed),
                         output_padding=tuple(output_padding) if transposed else 0)
            step = T.backward(layer, input_grad=bool(mask[0]), weight_grad=bool(mask[1]))
            m.grad_input += step.grad_input_macs
            m.grad_weight += step.grad_weight_macs
            if step.flop_counter_grad_weight is not None:
                m.flop_counter_extra += step.flop_counter_grad_weight - step.grad_weight_macs
            m.bias_adds += math.prod(_shape(grad_out)) if mask[2] else 0
            m.input_grad |= bool(mask[0])
            m.weight_grad |= bool(mask[1]) or bool(mask[2])
        elif func in ATTENTION_BACKWARD:
            q, k, v = _shape(args[1]), _shape(args[2]), _shape(args[3])
            step = T.attention(math.prod(q[:-2]), q[-2], k[-2], q[-1], v[-1], fused=True)
            m.grad_input += step.grad_input_macs
            m.recompute += step.recompute_macs
            m.input_grad = True
        elif func is RNN_BACKWARD:
            x, w_ih, w_hh = _shape(args[0]), _shape(args[1]), _shape(args[2])
            steps_batch, gates_h = math.prod(x[:-1]), w_ih[0]
            m.grad_input += steps_batch * gates_h * (x[-1] + w_hh[1])  # the input and the initial state: all computed
            m.grad_weight += steps_batch * gates_h * (x[-1] + w_hh[1])
            m.input_grad = m.weight_grad = True
        elif func in MATMUL_OPS:
            a, b = (args[1], args[2]) if func in (aten.addmm.default, aten.baddbmm.default) else (args[0], args[1])
            sa, sb = _shape(a), _shape(b)
            macs = math.prod(sa) * sb[-1]
            if node.name() in MATMUL_NODES:
                self.node_macs[node] = self.node_macs.get(node, 0) + macs
            else:  # a product inside another gradient formula: the gradient of an activation
                m.grad_input += macs
                m.input_grad = True
        elif func is aten.sum.dim_IntList and node.name() in ("AddmmBackward0", "BaddbmmBackward0"):
            m.bias_adds += math.prod(_shape(args[0]))
            m.weight_grad = True
        else:
            handler = handler_for(func)
            if handler is not None and handler.kind in MAC_KINDS and handler.macs is not None:
                counted = handler.macs(Call(func, args, {}, out))
                m.recompute += counted.macs if isinstance(counted, Count) else counted  # forward run again

    def split_matmuls(self) -> None:
        """Each gradient of a product costs its forward MACs: a node's gradient MACs split evenly over the factors
        that needed one - to grad-weight for a parameter (reached through views), to grad-input otherwise."""
        for node, macs in self.node_macs.items():
            m = self.module(self.node_module.get(node, ""))
            roles = [_role(node.next_functions[i][0]) for i in MATMUL_NODES[node.name()]]
            needed = [r for r in roles if r is not None]
            weights = sum(r == "weight" for r in needed)
            share = macs * weights // len(needed) if needed else 0
            m.grad_weight += share
            m.grad_input += macs - share
            m.weight_grad |= weights > 0
            m.input_grad |= len(needed) > weights or not needed


def _role(fn: Any) -> str | None:
    """'weight' when a factor's gradient flows (through views) into a parameter, 'input' otherwise, None when
    autograd computes none for it."""
    if fn is None:
        return None
    while fn is not None:
        name = fn.name()
        if name == ACCUMULATE:
            return "weight"
        if name not in PASS_NODES:
            return "input"
        nxt = [f for f, _ in fn.next_functions if f is not None]
        if len(nxt) != 1:
            return "input"
        fn = nxt[0]
    return "input"


class _Dispatch(TorchDispatchMode):
    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        node = torch._C._current_autograd_node()
        if node is not None:
            self.run.live.module = self.run.node_module.get(node, "")
        elif self.run.live.phase == "forward":  # the module running now (the tracer's stack)
            self.run.live.module = self.run.current
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            self.run.live.track(t)
        if node is None:
            self.run.forward_op(func, args, kwargs, out)
        else:
            self.run.backward_op(node, func, args, out)
        return out


class _Tagger(TorchFunctionMode):
    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.run.tag(out)
        return out


@contextlib.contextmanager
def _module_stack(model: torch.nn.Module, run: _Run) -> Iterator[None]:
    """The forward tracer's module stack (global forward hooks, removed on exit), as the run's."""
    with tracer.module_stack({id(m): n for n, m in model.named_modules()}) as stack:
        run.stack = stack
        yield


@contextlib.contextmanager
def _training_flags(model: torch.nn.Module) -> Iterator[None]:
    """Every module in training mode for the run (BatchNorm batch statistics, dropout), restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in flags:
            m.training = True
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def check_trainable(model: Any, format_name: str = "") -> None:
    """`--training` needs an nn.Module that autograd can run backward through (not a TorchScript graph)."""
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, torch.nn.Module):
        what = f"a {format_name} file" if format_name else "this model"
        raise BadInput(f"--training needs a PyTorch nn.Module built from code (.py, torchvision:, timm:); {what} has "
                       "no module whose backward autograd can trace", "training")


def trace_training(model: torch.nn.Module, input_shapes: list[tuple[int, ...]], optimizer: str = "adam",
                   dtype: str = "float32", depth: int | None = None) -> ModelTraining:
    """One training step of `model` on inputs of these shapes: per-module forward and gradient MACs from the
    backward autograd runs, the activations it keeps, and the simulated peak. The model is not modified."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.utils.stateless import _reparametrize_module  # what torch.func.functional_call runs inside

    check_trainable(model)
    opt = T.optimizer(optimizer)
    tdtype = getattr(torch, dtype)
    if not tdtype.is_floating_point:
        raise BadInput(f"training needs a floating dtype (float32, float16, bfloat16), not {dtype}", "dtype")
    itemsize = torch.empty((), dtype=tdtype).element_size()

    def cast(t: torch.Tensor) -> torch.dtype:
        return tdtype if t.is_floating_point() else t.dtype

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    # one name per tensor: tie_weights=True ties the others
    params = list(model.named_parameters())
    buffers = list(model.named_buffers())
    with fake:
        copies: dict[int, torch.Tensor] = {}  # tied parameters stay tied
        state: dict[str, torch.Tensor] = {}
        for n, t in [*params, *buffers]:
            if id(t) not in copies:
                copy = torch.empty_strided(t.shape, t.stride(), dtype=cast(t), device="cpu")
                if isinstance(t, torch.nn.Parameter) and t.requires_grad and copy.is_floating_point():
                    copy.requires_grad_(True)
                copies[id(t)] = copy
            state[n] = copies[id(t)]
        inputs = [torch.zeros(s, dtype=tdtype, device="cpu") for s in input_shapes]
    run = _Run({t.untyped_storage()._cdata for t in copies.values()})
    for t in [*copies.values(), *inputs]:
        run.live.track(t)
    with _module_stack(model, run), _training_flags(model):
        try:
            # the fake tensors stand in for the model's own through forward and backward (a checkpointed block
            # runs its forward again during backward, and must find them)
            # (stack_weights: restored in reverse order, or a module registered under two names keeps the stand-in)
            with fake, _Dispatch(run), _Tagger(run), torch.enable_grad(), \
                    _reparametrize_module(model, state, tie_weights=True, strict=False, stack_weights=True):
                with torch.autograd.graph.saved_tensors_hooks(run.pack, lambda t: t):
                    out = model(*inputs)
                outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor) and o.requires_grad]
                if not outs:
                    raise BadInput("nothing to train: no output of the model requires a gradient (every parameter "
                                   "is frozen?)", "training")
                run.live.phase, run.live.module = "backward", ""
                seeds = [torch.ones_like(o) for o in outs]
                torch.autograd.backward(outs, seeds)
                del seeds
        except (BadInput, RuntimeFailure):
            raise
        except BaseException as e:  # the user's code: the forward tracer's guard, one line
            where = f" in module '{run.current}'" if run.current else ""
            raise tracer.user_failure(e, "the model's forward or backward",
                                      f"the training step of the model raised{where}") from None
    run.split_matmuls()
    # which parameters autograd gave a gradient (frozen ones and ones the forward never used get none)
    graded = {pid for pid, copy in copies.items() if copy.grad is not None}
    live_after = run.live.bytes
    simulated_peak = run.live.peak
    output_shapes = [_shape(o) for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
    training = _rows(model, run, opt, dtype, itemsize, depth, input_shapes, graded)
    order = [p.numel() for p in dict.fromkeys(model.parameters()) if id(p) in graded]  # the optimizer's order
    mem = _memory(training, order, run, opt, dtype, itemsize, simulated_peak, live_after, input_shapes, buffers)
    training.memory = mem
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    return ModelTraining(training, types, [tuple(s) for s in input_shapes], output_shapes, run.live.where[1],
                         run.live.where[0])


def _group(name: str, depth: int | None) -> str:
    if depth is None or not name:
        return name
    return ".".join(name.split(".")[:depth])


def _rows(model: torch.nn.Module, run: _Run, opt: T.Optimizer, dtype: str, itemsize: int, depth: int | None,
          input_shapes: list[tuple[int, ...]], graded: set[int]) -> T.Training:
    own: dict[str, list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) not in seen:  # a tied parameter belongs to the first module that has it
                seen.add(id(p))
                own.setdefault(name, []).append(p)
    groups: dict[str, list[str]] = {}
    for name in sorted(run.modules, key=lambda n: run.modules[n].order):
        groups.setdefault(_group(name, depth), []).append(name)
    for name in own:
        groups.setdefault(_group(name, depth), [])
    rows = []
    for gname, members in groups.items():
        ms = [run.modules[n] for n in members]
        ps = [p for n, plist in own.items() if _group(n, depth) == gname for p in plist]
        trainable = [p for p in ps if id(p) in graded]
        kinds = [k for m in ms for k in m.kinds]
        kind = kinds[0] if len(set(kinds)) == 1 else ("module" if kinds else "other")
        extra = sum(m.flop_counter_extra for m in ms)
        rows.append(T.TrainingRow(
            gname or "(model)", kind, forward_macs=sum(m.forward for m in ms),
            grad_input_macs=sum(m.grad_input for m in ms), grad_weight_macs=sum(m.grad_weight for m in ms),
            grad_bias_adds=sum(m.bias_adds for m in ms), recompute_macs=sum(m.recompute for m in ms),
            input_grad=any(m.input_grad for m in ms), weight_grad=bool(trainable),
            trainable=sum(p.numel() for p in trainable), frozen=sum(p.numel() for p in ps if id(p) not in graded),
            sizes=tuple(p.numel() for p in trainable), saved_bytes=sum(m.saved for m in ms),
            flop_counter_grad_weight=sum(m.grad_weight for m in ms) + extra if extra else None))
    batch = input_shapes[0][0] if input_shapes and input_shapes[0] else 1
    placeholder = T.Memory(dtype, opt.name, 0, 0, 0, 0, 0, 0, 0, 0, "simulated")
    return T.Training(rows, placeholder, batch)


SIMULATED = (
    "peak simulated on fake CPU tensors: every tensor the forward, autograd and the kernels allocate, alive from "
    "the op that makes it until torch frees it (a non-caching allocator's view; CUDA's caching allocator rounds "
    "blocks up and keeps freed ones, and cuDNN/cuBLAS add workspaces)",
    "gradients start as None (zero_grad's default) and the optimizer state exists (from step 2 on); backward "
    "starts from a gradient of ones for every output that requires one (the loss itself is not counted)",
)


def _memory(training: T.Training, order: list[int], run: _Run, opt: T.Optimizer, dtype: str, itemsize: int,
            simulated_peak: int, live_after: int, input_shapes: list[tuple[int, ...]],
            buffers: list[tuple[str, torch.Tensor]]) -> T.Memory:
    rows = training.rows
    weights = sum(r.trainable + r.frozen for r in rows) * itemsize
    seen: set[int] = set()
    buffer_bytes = 0
    for _, b in buffers:
        if id(b) not in seen:
            seen.add(id(b))
            buffer_bytes += b.numel() * (itemsize if b.is_floating_point() else b.element_size())
    grads = sum(r.trainable for r in rows) * itemsize
    state = sum(T.state_bytes(opt, r.trainable, r.tensors, itemsize) for r in rows)
    inputs = sum(math.prod(s) for s in input_shapes) * itemsize
    step = live_after + state + T.step_transient(opt, order, itemsize)
    return T.Memory(dtype, opt.name, weights, buffer_bytes, grads, state, sum(run.saved.values()), inputs,
                    simulated_peak + state, step, "simulated", SIMULATED + (T.step_assumption(opt),))


def fit_batch(model: torch.nn.Module, input_shapes: list[tuple[int, ...]], limit: int, optimizer: str = "adam",
              dtype: str = "float32") -> T.BatchFit:
    """The largest batch (dim 0 of every input) whose simulated training peak fits `limit` bytes."""

    def peak(batch: int) -> int:
        shapes = [(batch, *s[1:]) for s in input_shapes]
        return trace_training(model, shapes, optimizer, dtype).training.memory.peak

    return T.largest_batch(peak, limit)
