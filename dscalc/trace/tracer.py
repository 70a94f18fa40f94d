"""Trace a PyTorch model per layer without its weights: a dispatch mode records every aten op with its shapes, the
bytes it moves and the module that issued it; the op registry (`trace.ops`) turns conv/matmul/attention ops into
exact MACs, and an op it has no formula for is decomposed (as FlopCounterMode does) before it is called uncounted.

How a model runs, by what it is:
- an eager module: a structural copy on the meta device (`wrappers.meta_copy`), module hooks naming the running
  module for the time of the run only;
- a torch.export graph (`ExportedProgram.module()`): its nodes run one by one, each named by the module path its
  `nn_module_stack` records (`trace.graph`);
- a TorchScript module: its inlined graph interpreted node by node on meta tensors, each named by the module
  hierarchy TorchScript records (`trace.script`).

Every run happens in one dispatch regime - autograd's normal mode with gradients off - whatever mode the caller is
in (inference mode would hand composite ops like `aten.conv2d` to the recorder undecomposed). When the meta run
cannot go on - an op with no meta kernel (nonzero, NMS, quantized kernels) or an output whose shape depends on
values - the model runs for real on the CPU (random weights for a model built on meta; a copy otherwise) and the
trace says so, unless that run would need more memory than the machine has.

The model is never changed: it is copied, or run functionally on meta tensors, and hooks live only during a run.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import typing
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from dscalc.cost.opkinds import MAC_KINDS, NORM_KINDS
from dscalc.errors import BadInput, RuntimeFailure, first_line, from_user_code, interrupted
from dscalc.trace import wrappers
from dscalc.trace.ops import (
    COPIES,
    SHAPE_OPS,
    Call,
    Count,
    Mismatch,
    NeedsValues,
    check_for,
    handler_for,
    key_of,
    pool_window,
    shape_of,
)
from dscalc.trace.records import OpRecord, Size, Trace
from dscalc.trace.run import MetaLimit, Runner

#: the random inputs and weights of a real run are drawn from this seed, so a rerun counts the same
SEED = 0


def _op_name(func: Any) -> str:
    if isinstance(func, torch._ops.HigherOrderOperator):
        return f"higher_order::{func.name()}"
    name = getattr(func, "__name__", str(func)).split(".")[0]
    namespace = getattr(func, "namespace", "aten")
    return name if namespace == "aten" else f"{namespace}::{name}"


def _tensors(tree: Any) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _size(tensors: list[torch.Tensor]) -> Size:
    """Floating elements (their width follows --dtype) and the bytes of the rest at their own width."""
    elements = fixed = 0
    for t in tensors:
        n = t.numel()
        if t.is_floating_point():
            elements += n
        else:
            fixed += n * t.element_size()
    return Size(elements, fixed)


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return int(t.untyped_storage()._cdata)
    except (RuntimeError, NotImplementedError, AttributeError, TypeError):
        return None  # a tensor without a plain storage (nested, sparse, a subclass)


class _Liveness:
    """Live activation bytes over the run: a storage counts from the op that creates it until the last tensor
    viewing it is freed (tensors that exist before the run - inputs, parameters, buffers - are not activations).
    The peak is kept per floating itemsize (1, 2, 4), since fixed-width tensors do not scale with --dtype."""

    def __init__(self, existing: list[torch.Tensor]) -> None:
        self.excluded = {k for k in map(_storage_key, existing) if k is not None}
        self.live = Size()
        self.peak = {1: 0, 2: 0, 4: 0}
        self.storages: dict[int, list[Any]] = {}  # key -> [tensors alive, Size]
        self.tensors: dict[int, int] = {}  # id(tensor) -> storage key
        self.paused = False

    def track(self, out: Any) -> None:
        if self.paused:
            return
        for t in _tensors(out):
            if id(t) in self.tensors:
                continue
            key = _storage_key(t)
            if key is None or key in self.excluded:
                continue
            entry = self.storages.get(key)
            if entry is None:
                nbytes = t.untyped_storage().nbytes()
                size = Size(nbytes // t.element_size()) if t.is_floating_point() else Size(0, nbytes)
                entry = self.storages[key] = [0, size]
                self.live = self.live + size
                for width in self.peak:
                    self.peak[width] = max(self.peak[width], self.live.elements * width + self.live.fixed_bytes)
            entry[0] += 1
            self.tensors[id(t)] = key
            weakref.finalize(t, self._release, id(t), key)

    def _release(self, tensor_id: int, key: int) -> None:
        self.tensors.pop(tensor_id, None)
        entry = self.storages.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del self.storages[key]
            self.live = Size(self.live.elements - entry[1].elements, self.live.fixed_bytes - entry[1].fixed_bytes)


#: module classes (or a base class, by name) -> what the module is; an op it issues takes this kind (opkinds)
MODULE_KINDS = {"Linear": "linear", "Bilinear": "linear", "LazyLinear": "linear", "RNNBase": "recurrent",
                "RNNCellBase": "recurrent", "MultiheadAttention": "attention", "LayerNorm": "layernorm",
                "GroupNorm": "groupnorm", "_InstanceNorm": "instancenorm", "RMSNorm": "rmsnorm",
                "_BatchNorm": "batchnorm", "SyncBatchNorm": "batchnorm", "BatchNorm2d": "batchnorm"}


def module_kind(class_names: list[str]) -> str | None:
    """What a module is, from its class and base classes (nearest first): a Linear of any bias, an RNN, attention,
    a norm; a class named like `LlamaRMSNorm` is an RMS norm whatever its bases."""
    for name in class_names:
        if name in MODULE_KINDS:
            return MODULE_KINDS[name]
    return "rmsnorm" if class_names and class_names[0].endswith("RMSNorm") else None


def _first_shape(tree: Any) -> tuple[int, ...]:
    found = _tensors(tree)
    return shape_of(found[0]) if found else ()


class _Context:
    """What the recorder knows of an op beside the path of the module running it: every module's kind, which
    module owns each parameter (so a functional call on a child's weights is the child's), the calls of each
    module (a module called twice keeps one row per call, with its shapes), and whether scaled dot-product
    attention is running (its products are `attention`)."""

    def __init__(self, kinds: dict[str, str], owners: dict[int, set[str]] | None = None, eager: bool = False) -> None:
        self.kinds = kinds
        self.owners = owners or {}
        self.eager = eager  # the modules' hooks run (an eager model): its parameters and calls are known
        self.calls: dict[str, int] = {}  # module path -> how many times it was called so far
        self.frames: list[tuple[str, int]] = []  # the running modules, (path, call number), outermost first
        self.repeated: tuple[tuple[str, int], ...] = ()  # the frames of a second or later call
        self.io: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
        self.attention = 0
        self.modules: set[int] = set()  # ids of the modules whose calls are counted (not a parametrization's)

    def enter(self, path: str, inputs: Any) -> None:
        n = self.calls.get(path, 0)
        self.calls[path] = n + 1
        self.frames.append((path, n))
        if n:
            self.repeated = (*self.repeated, (path, n))
        self.io.setdefault(path, []).append((_first_shape(inputs), ()))

    def leave(self, output: Any) -> None:
        if not self.frames:
            return
        path, n = self.frames.pop()
        if n:
            self.repeated = tuple(f for f in self.repeated if f != (path, n))
        calls = self.io.get(path)
        if calls is not None and n < len(calls):
            calls[n] = (calls[n][0], _first_shape(output))

    def owning(self, tensors: list[torch.Tensor]) -> set[str]:
        """The modules whose parameters these tensors are (or view)."""
        found: set[str] = set()
        for t in tensors:
            key = _storage_key(t)
            if key is not None and key in self.owners:
                found |= self.owners[key]
        return found


def _descends(path: str, parent: str) -> bool:
    return not parent or path.startswith(parent + ".")


def _refine(kind: str, module: str, ctx: _Context, tensors: list[torch.Tensor]) -> tuple[str, str]:
    """(kind, module) of an op from what the module that issued it is: a product on a parameter of a child (a
    functional call on its weights) is the child's; a product inside an nn.Linear (or on MultiheadAttention's
    projection weights) is `linear`, one inside an RNN `recurrent`, one of two activations `attention` inside SDPA
    or MultiheadAttention, any other `matmul` (a functional product, on a bare parameter too); a norm module's ops
    take its norm kind."""
    mk = ctx.kinds.get(module)
    if kind in MAC_KINDS:
        owners = ctx.owning(tensors)
        if owners and module not in owners:
            children = sorted(p for p in owners if _descends(p, module))
            if children:
                module, mk = children[0], ctx.kinds.get(children[0])
        if kind not in ("linear", "matmul"):
            return kind, module
        if mk in ("linear", "recurrent"):
            return mk, module
        if owners and mk == "attention":  # MultiheadAttention's projections on its own in_proj weights
            return "linear", module
        if ctx.attention or mk == "attention":
            return "attention", module
        return ("matmul" if ctx.eager else kind), module
    if mk in NORM_KINDS and kind in ("batchnorm", "elementwise", "pooling"):
        return mk, module
    return kind, module


_DECOMPOSITIONS: dict[Any, Any] | None = None


def _decomposition_table() -> dict[Any, Any]:
    global _DECOMPOSITIONS
    if _DECOMPOSITIONS is None:
        import torch._decomp

        _DECOMPOSITIONS = dict(torch._decomp.decomposition_table)
    return _DECOMPOSITIONS


class _Recorder(TorchDispatchMode):
    """Records every op; decomposes the ones the registry does not know, as FlopCounterMode does."""

    supports_higher_order_operators = True

    def __init__(self, where: Callable[[], str], liveness: _Liveness, context: _Context | None = None) -> None:
        super().__init__()
        self.where = where
        self.context = context or _Context({})
        self.liveness = liveness
        self.records: list[OpRecord] = []
        self.copies: list[OpRecord] = []  # the copying shape ops (`Trace.copies`)
        self.uncounted: dict[str, int] = {}
        self._no_macs: set[Any] = set()  # ops whose table decomposition turned out to do no multiply-add

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = handler_for(func)
        name = _op_name(func)
        if handler is None and name not in SHAPE_OPS and not isinstance(func, torch._ops.HigherOrderOperator):
            decomposed = self._decompose(func, args, kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        check = check_for(func)
        if check is not None:
            try:
                check(args, kwargs)
            except Mismatch as e:
                e.module = self.where()  # type: ignore[attr-defined]
                raise
        out = func(*args, **kwargs)
        self._record(func, handler, name, args, kwargs, out)
        self.liveness.track(out)
        return out

    def _decompose(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """Its pieces, recorded: the op's own composite decomposition, or else torch's decomposition table when
        the pieces do some multiply-add (an op that decomposes into data movement stays one named op)."""
        with self:
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        table = _decomposition_table().get(func)
        if table is None or func in self._no_macs:
            return NotImplemented
        mark, uncounted = len(self.records), dict(self.uncounted)
        self.liveness.paused = True
        try:
            with self:
                out = table(*args, **kwargs)
        except Exception:
            out = NotImplemented
        finally:
            self.liveness.paused = False
        if out is not NotImplemented and any(r.macs for r in self.records[mark:]):
            self.liveness.track(out)
            return out
        del self.records[mark:]
        self.uncounted = uncounted
        self._no_macs.add(func)
        return NotImplemented

    def _record(self, func: Any, handler: Any, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        if handler is None and name in SHAPE_OPS:
            if name in COPIES:
                self._copy(func, args, kwargs, out)
            return
        outs = _tensors(out)
        elements = outs[0].numel() if outs else 0
        module = self.where()
        ins = _tensors((args, kwargs))
        reads, writes = _size(ins), _size(outs)
        data = [t for t in ins if t.dim() > 1] or ins  # (addmm's first operand is its bias)
        io = (shape_of(data[0]) if data else (), shape_of(outs[0]) if outs else ())
        calls = self.context.repeated
        if handler is None:
            self.uncounted[name] = self.uncounted.get(name, 0) + 1
            self.records.append(OpRecord(module, str(func), "other", 0, elements, None, 0, reads, writes,
                                         calls=calls, io=io))
            return
        count = handler.macs(Call(func, args, kwargs, out)) if handler.macs else Count(0)
        if isinstance(count, int):
            count = Count(count)
        kind, module = _refine(handler.kind, module, self.context, ins)
        layer = replace(count.layer, name=module or "conv") if count.layer is not None else None
        reads = reads + Size(0, count.fixed_bytes)
        window = pool_window(name, args, io) if kind == "pooling" else 0
        self.records.append(OpRecord(module, str(func), kind, count.macs, elements, layer, count.bias_adds,
                                     reads, writes, count.dtype, calls=calls, io=io, window=window))

    def _copy(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        """A shape op that copies its data, as a record of kind `other` in `copies` (not in the counts)."""
        outs = _tensors(out)
        if not outs:
            return
        ins = _tensors((args, kwargs))
        io = (shape_of(ins[0]) if ins else (), shape_of(outs[0]))
        self.copies.append(OpRecord(self.where(), str(func), "other", 0, outs[0].numel(), None, 0, _size(ins),
                                    _size(outs), calls=self.context.repeated, io=io))


class _AttentionCalls(TorchFunctionMode):
    """Counts the scaled dot-product attention calls running, so the products inside one are `attention` (its
    math path decomposes into plain batched products on the meta device)."""

    def __init__(self, context: _Context) -> None:
        super().__init__()
        self.context = context

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not _SDPA:
            return func(*args, **kwargs)
        self.context.attention += 1
        try:
            return func(*args, **kwargs)
        finally:
            self.context.attention -= 1


_SDPA = torch.nn.functional.scaled_dot_product_attention


@contextlib.contextmanager
def standard_mode() -> Iterator[None]:
    """Autograd's normal dispatch with gradients off, whatever the caller's mode (inference mode, no_grad)."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def user_failure(e: BaseException, what: str, raised: str) -> BaseException:
    """The one-line failure for what the user's code raised (dscalc's own errors are re-raised before this):
    Ctrl-C pressed is itself; a KeyboardInterrupt or SystemExit the code raised, and any exception, name `what`."""
    if isinstance(e, KeyboardInterrupt):
        return e if interrupted() else from_user_code(KeyboardInterrupt(), what)
    if isinstance(e, SystemExit):
        return from_user_code(e, what)
    return RuntimeFailure(f"{raised}: {type(e).__name__}: {first_line(e)}")


@contextlib.contextmanager
def module_stack(names: dict[int, str], context: _Context | None = None) -> Iterator[list[str]]:
    """Global forward hooks that keep the path of the running module (and, in `context`, each named module's calls
    and their input and output shapes); removed on exit, whatever happens."""
    stack: list[str] = []
    named: list[bool] = []

    def pre(module: torch.nn.Module, inputs: Any) -> None:
        path = names.get(id(module))
        stack.append(path if path is not None else stack[-1] if stack else "")
        # a parametrization's modules run inside the module they parametrize: not calls of it
        counted = path is not None and context is not None and id(module) in context.modules
        named.append(counted)
        if counted and path is not None and context is not None:
            context.enter(path, inputs)

    def post(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if stack:
            stack.pop()
        if named and named.pop() and context is not None:
            context.leave(output)

    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


class _EagerRun(Runner):
    """An eager model's run: a Runner that also knows its modules (`context`)."""

    context: _Context


def _eager_context(model: torch.nn.Module) -> _Context:
    """Every module's kind and every parameter's owners, of the model that runs (its meta copy)."""
    kinds: dict[str, str] = {}
    for name, m in model.named_modules():
        kind = module_kind([c.__name__ for c in type(m).__mro__])
        if kind is not None:
            kinds.setdefault(wrappers.canonical(name), kind)
    owners: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        key = _storage_key(p)
        if key is not None:
            owners.setdefault(key, set()).add(wrappers.canonical(name.rpartition(".")[0]))
    context = _Context(kinds, owners, eager=True)
    context.modules = {id(m) for n, m in model.named_modules() if wrappers.canonical(n) == n}
    return context


def _meta_limitation(e: BaseException) -> str | None:
    """Why a meta run failed, when the meta device is the cause (not the model: a shape error fails for real too)."""
    if isinstance(e, NeedsValues):
        return str(e)
    text = first_line(e).split(". ")[0]
    dynamic = type(e).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException",
                                   "GuardOnDataDependentSymNode")
    if isinstance(e, NotImplementedError) or dynamic or "meta" in str(e).lower():
        return text
    return None


def list_input(model: Any) -> bool:
    """Whether the forward takes a list of tensors as its first argument: annotated so (`List[Tensor]`), or a
    torchvision detection model (its `transform` batches a list of images; RetinaNet's forward is unannotated)."""
    if type(getattr(model, "transform", None)).__name__ == "GeneralizedRCNNTransform":
        return True
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    ann = params[0].annotation
    if isinstance(ann, str):
        return ann.replace(" ", "").lower().startswith(("list[tensor]", "list[torch.tensor]"))
    return typing.get_origin(ann) is list


def arguments(model: Any, tensors: list[torch.Tensor]) -> tuple:
    """The positional arguments of the forward: the tensors, or one list of images (a batched shape splits into
    its images) when the forward takes a list."""
    if list_input(model):
        images: list[torch.Tensor] = []
        for t in tensors:
            images.extend(t.unbind(0) if t.dim() == 4 else [t])
        return (images,)
    return tuple(tensors)


def _inputs(shapes: list[tuple[int, ...]], dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    if any(getattr(s, "dtype", "") for s in shapes):  # --input 1x128:int64: each input its own type
        return _typed_inputs(shapes, dtype, device)
    if device == "meta":
        return [torch.empty(s, dtype=dtype, device="meta") for s in shapes]
    generator = torch.Generator().manual_seed(SEED)
    if dtype.is_floating_point:
        return [torch.rand(s, generator=generator).to(dtype) for s in shapes]
    return [torch.zeros(s, dtype=dtype) for s in shapes]


def _typed_inputs(shapes: list[tuple[int, ...]], dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    """Inputs of the dtype each --input names; integers drawn from {0, 1} for a real run (a token id in range of
    any vocabulary, and a valid attention mask), booleans all True."""
    generator = torch.Generator().manual_seed(SEED)
    out = []
    for s in shapes:
        own = getattr(torch, getattr(s, "dtype", "") or "", None)
        own = own if isinstance(own, torch.dtype) else dtype
        if device == "meta":
            out.append(torch.empty(s, dtype=own, device="meta"))
        elif own.is_floating_point:
            out.append(torch.rand(s, generator=generator).to(own))
        elif own == torch.bool:
            out.append(torch.ones(s, dtype=own))
        else:
            out.append(torch.randint(0, 2, tuple(s), generator=generator).to(own))
    return out


@dataclass
class _Structure:
    types: dict[str, str]
    own: dict[str, int]
    params: int
    weights: Size
    buffers: Size
    quantized: int
    buffer_count: int
    roles: list[tuple[str, str, int]]


def _role(name: str) -> str:
    leaf = name.rpartition(".")[2]
    if leaf in ("weight", "weight_g", "weight_v") or ".parametrizations.weight." in f"{name}.":
        return "weight"
    return "bias" if leaf == "bias" or ".parametrizations.bias." in f"{name}." else "other"


def _structure(model: Any) -> _Structure:
    """Module types, each module's own parameters (every parameter once, under its first name; parametrized
    pieces under the module they parametrize), the total, weight and buffer sizes, quantized parameters."""
    types = {n: wrappers.type_name(m) for n, m in model.named_modules() if wrappers.canonical(n) == n}
    own: dict[str, int] = {}
    roles: list[tuple[str, str, int]] = []
    weights = Size()
    for name, p in model.named_parameters():
        owner = wrappers.canonical(name.rpartition(".")[0])
        own[owner] = own.get(owner, 0) + p.numel()
        roles.append((owner, _role(name), p.numel()))
        weights = weights + _size([p])
    total = sum(own.values())
    quantized = 0
    for name, m in model.named_modules():
        packed = getattr(m, "_weight_bias", None)
        if callable(packed) and hasattr(m, "_packed_params") and not type(m).__name__.endswith("PackedParams"):
            try:
                w, b = packed()
            except Exception:  # a module that only looks quantized
                continue
            for role, t in (("weight", w), ("bias", b)):
                if isinstance(t, torch.Tensor):
                    own[name] = own.get(name, 0) + t.numel()
                    roles.append((name, role, t.numel()))
                    quantized += t.numel()
                    weights = weights + Size(0, t.numel() * t.element_size())
    buffers = list(model.buffers())
    return _Structure(types, own, total + quantized, weights, _size(buffers), quantized,
                      sum(b.numel() for b in buffers), roles)


def trace(model: Any, input_shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32,
          build_cpu: Callable[[], Any] | None = None) -> Trace:
    """Run `model` once on meta tensors of these shapes and record every op; if the meta device cannot run it,
    run it for real on the CPU (a model built by `build_cpu`, or a copy of `model` when it has real tensors).
    The model is not modified."""
    model, notes = wrappers.unwrap(model)
    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    with standard_mode():
        try:
            tr = _trace_once(model, input_shapes, dtype, "meta")
        except MetaLimit as limit:
            real, how = _cpu_model(model, build_cpu, limit, input_shapes, dtype)
            tr = _trace_once(real, input_shapes, dtype, "cpu")
            notes.append(f"counted on a real CPU run ({how}, a uniform random input, seed {SEED}) because the meta "
                         f"device cannot run it: {limit.reason}; counts that depend on values (how many boxes "
                         "survive NMS, ...) follow from those weights and that input")
    tr.notes[:0] = notes
    return tr


def _trace_once(model: Any, input_shapes: list[tuple[int, ...]], dtype: torch.dtype, device: str) -> Trace:
    from dscalc.trace import graph, script

    st = _structure(model)
    inputs = _inputs(input_shapes, dtype, device)
    notes = []
    note = wrappers.parametrization_note(model) if isinstance(model, torch.nn.Module) else None
    if note:
        notes.append(note)
    if isinstance(model, torch.jit.ScriptModule):
        run = script.runner(model, inputs, device)
    elif graph.is_export_graph(model):
        run = graph.runner(model, inputs, device)
    else:
        run = _eager_runner(model, inputs, device, [getattr(s, "name", "") for s in input_shapes])
    context = run.context if isinstance(run, _EagerRun) else \
        _Context({p: k for p, t in run.types.items() if (k := module_kind([t])) is not None})
    liveness = _Liveness([*run.existing, *inputs])
    recorder = _Recorder(run.where, liveness, context)
    try:
        with recorder:
            out = run.call()
    except (BadInput, RuntimeFailure, MetaLimit):
        raise
    except Mismatch as e:  # the real kernel would refuse this op: the user's input (or model) does not fit
        path = getattr(e, "module", run.where())
        raise BadInput(f"the model's forward fails{_where(model, path)}: RuntimeError: {first_line(e, 400)}") \
            from None
    except BaseException as e:  # the user's forward raised (or was interrupted): name the module it was in
        reason = _meta_limitation(e) if device == "meta" and isinstance(e, Exception) else None
        if reason is not None:
            traced = sum((r.writes for r in recorder.records), Size())
            raise MetaLimit(reason, traced) from None
        where = _where(model, run.where())
        raise user_failure(e, f"the model's forward{where}", f"the model's forward raised{where}") from None
    types = dict(st.types)
    types.update(run.types)
    return Trace(
        records=recorder.records,
        copies=recorder.copies,
        uncounted=recorder.uncounted,
        module_types=types,
        module_params=st.own,
        params=st.params,
        input_shapes=[tuple(s) for s in input_shapes],
        output_shapes=[shape_of(o) for o in _tensors(out)],
        notes=notes + run.notes,
        weights=st.weights,
        buffers=st.buffers,
        inputs=_size(inputs),
        peak=dict(liveness.peak),
        quantized_params=st.quantized,
        buffer_count=st.buffer_count,
        param_roles=st.roles,
        module_kinds={**{p: k for p, t in types.items() if (k := module_kind([t])) is not None}, **context.kinds},
        module_io=dict(context.io),
    )


def _eager_runner(model: torch.nn.Module, inputs: list[torch.Tensor], device: str,
                  keywords: list[str] | None = None) -> Runner:
    """The model's structural copy on meta (or, for a real run, the CPU model it was given, already a copy or
    freshly built), with hooks naming the running module by its first (canonical) path."""
    target = model
    notes: list[str] = []
    if device == "meta":
        try:
            target = wrappers.meta_copy(model)
        except Exception as e:  # an attribute deepcopy refuses (a lock, a generator): run functionally instead
            return _functional_runner(model, inputs, e)
    names = {id(m): wrappers.canonical(n) for n, m in target.named_modules()}
    holder: list[list[str]] = []
    context = _eager_context(target)

    def call() -> Any:
        with module_stack(names, context) as stack, _AttentionCalls(context):
            holder.append(stack)
            return target(*arguments(target, positional), **named)

    def where() -> str:
        return holder[-1][-1] if holder and holder[-1] else ""

    given = keywords or [""] * len(inputs)  # --input NAME=SHAPE: passed as a keyword argument
    positional = [t for t, n in zip(inputs, given) if not n]
    named = {n: t for t, n in zip(inputs, given) if n}
    run = _EagerRun(call, where, [*target.parameters(), *target.buffers()], notes=notes)
    run.context = context
    return run


def _functional_runner(model: torch.nn.Module, inputs: list[torch.Tensor], why: Exception) -> Runner:
    """torch.func.functional_call on meta copies of the model's tensors, for a model that cannot be copied; its
    modules' training flags are restored afterwards (a forward's other Python side effects are not)."""
    from torch.func import functional_call

    state = {n: torch.empty_like(t, device="meta") for n, t in [*model.named_parameters(), *model.named_buffers()]}
    names = {id(m): wrappers.canonical(n) for n, m in model.named_modules()}
    holder: list[list[str]] = []
    context = _eager_context(model)
    context.owners = {}  # the state dict's meta tensors are new: functional calls are not told apart here
    context.eager = False

    def call() -> Any:
        flags = [(m, m.training) for m in model.modules()]
        try:
            with module_stack(names, context) as stack, _AttentionCalls(context):
                holder.append(stack)
                return functional_call(model, state, arguments(model, inputs), tie_weights=True, strict=False)
        finally:
            for m, training in flags:
                m.training = training

    def where() -> str:
        return holder[-1][-1] if holder and holder[-1] else ""

    note = (f"ran functionally on the model itself (it cannot be copied: {type(why).__name__}: {first_line(why)}); "
            "attributes its forward sets stay set")
    run = _EagerRun(call, where, list(state.values()), notes=[note])
    run.context = context
    return run


#: a real run is refused when it would need more than this share of the memory the machine has available
MEMORY_SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available to a new run (MemAvailable on Linux; the free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cpu_model(model: Any, build_cpu: Callable[[], Any] | None, limit: MetaLimit,
               input_shapes: list[tuple[int, ...]], dtype: torch.dtype) -> tuple[Any, str]:
    """The model to run for real on the CPU, and how it got its weights - after checking that the run fits."""
    tensors = [*model.parameters(), *model.buffers()]
    state = sum(t.numel() * t.element_size() for t in tensors)
    meta = any(t.device.type == "meta" for t in tensors)
    copying = not meta or build_cpu is None
    item = torch.empty((), dtype=dtype).element_size()
    need = state * (2 if copying and not meta else 1) + sum(math.prod(s) for s in input_shapes) * item \
        + limit.traced.bytes("float32")
    have = available_memory()
    if need > MEMORY_SHARE * have:
        raise RuntimeFailure(f"the model needs a real CPU run ({limit.reason}), which would take about {_gib(need)} "
                             f"(weights {_gib(state)}, activations so far {_gib(limit.traced.bytes('float32'))}); "
                             f"only {_gib(have)} is available")
    if meta:
        if build_cpu is None:
            raise RuntimeFailure(f"the model needs a real CPU run ({limit.reason}) but it is on the meta device; "
                                 "build it on the CPU (random weights are fine)")
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.random.fork_rng())
            torch.manual_seed(SEED)
            built, _ = wrappers.unwrap(build_cpu())
        return built, f"random weights, seed {SEED}"
    if isinstance(model, torch.jit.ScriptModule):
        return model, "the model's own weights"  # the interpreter runs it on copies of its tensors
    return wrappers.real_copy(model), "a copy with the model's own weights"


def _where(model: Any, path: str) -> str:
    """' in module 'layer1.0' (BasicBlock)', or ' in Net.forward' when the model itself was running."""
    if not path:
        name = getattr(model, "original_name", None) or type(model).__name__
        return f" in {name}.forward"
    try:
        culprit = wrappers.type_name(model.get_submodule(path))
    except AttributeError:
        culprit = "module"
    return f" in module '{path}' ({culprit})"


__all__ = ["trace", "standard_mode", "arguments", "list_input", "Runner", "MetaLimit", "key_of"]
