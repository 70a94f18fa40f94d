"""The public forward-count cases of fvcore's and torch's own flop-count tests, rebuilt case by case and run through
dscalc. Each cites its source test; the expected numbers are theirs (fvcore counts MACs, as dscalc does; torch's
FlopCounterMode counts 2 FLOPs per MAC, so its figures are halved here). Where a convention differs (fvcore adds
BatchNorm and pooling), the test says so and checks what dscalc reports instead.

Sources: facebookresearch/fvcore tests/test_flop_count.py and tests/test_jit_model_analysis.py;
pytorch/pytorch test/test_flop_counter.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dscalc.trace.profile import profile_model


class Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def total(model, *shapes) -> int:
    return profile_model(model, [tuple(s) for s in shapes]).totals["macs"]


def by_module(model, *shapes) -> dict[str, int]:
    """MACs per module, with every ancestor's total (fvcore's by_module() shape: '' is the whole model)."""
    result = profile_model(model, [tuple(s) for s in shapes])
    out: dict[str, int] = {"": result.totals["macs"]}
    for row in result.rows:
        if not row.macs:
            continue
        name = "" if row.name == "(model)" else row.name.split(" (call ")[0]  # fvcore sums a module's calls
        parts = name.split(".") if name else []
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            out[key] = out.get(key, 0) + row.macs
    return out


# --- fvcore tests/test_flop_count.py ------------------------------------------------------------------------------

def test_fvcore_nn_linear():
    # TestFlopCountAnalysis.test_nn: nn.Linear(8, 4) on 5x8: gt = batch_size * input_dim * output_dim = 160
    assert total(nn.Linear(8, 4), (5, 8)) == 5 * 8 * 4


def test_fvcore_linear():
    # test_linear: LinearNet(10, 20) on 5x10: 5*10*20; on 5x5x10 (extra dim): 5*10*5*20
    assert total(nn.Linear(10, 20), (5, 10)) == 5 * 10 * 20
    assert total(nn.Linear(10, 20), (5, 5, 10)) == 5 * 10 * 5 * 20


FVCORE_CONVS = [
    # (conv_dim, batch, input_dim, output_dim, spatial_dim, kernel_size, padding, stride, groups, transpose, out_pad)
    (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),
    (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),
    (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),
    (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),
]


@pytest.mark.parametrize("case", FVCORE_CONVS)
def test_fvcore_conv(case):
    # test_conv: gt = batch * input_dim * output_dim * k^d * spatial^d / groups, where spatial is the output size
    # ((spatial_dim + 2*padding - k) // stride + 1), or the input size for a transposed conv
    dims, batch, cin, cout, size, k, pad, stride, groups, transpose, out_pad = case
    if transpose:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
        conv = cls(cin, cout, k, stride, pad, groups=groups, output_padding=out_pad)
        spatial = size
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
        conv = cls(cin, cout, k, stride, pad, groups=groups)
        spatial = (size + 2 * pad - k) // stride + 1
    gt = batch * cin * cout * k**dims * spatial**dims // groups
    assert total(conv, (batch, cin, *(size,) * dims)) == gt


def test_fvcore_matmul_and_broadcast():
    # test_matmul: 20x10 @ 10x100 = m*n*p; test_matmul_broadcast: 1x20x10 @ 1x10x100 (m*n*p), 2x2x20x10 @
    # 2x2x10x100 (4*m*n*p), 1x20x10 @ 10x100 (m*n*p), 2x20x10 @ 10x100 (2*m*n*p)
    m, n, p = 20, 10, 100
    mm = Fn(torch.matmul)
    assert total(mm, (m, n), (n, p)) == m * n * p
    assert total(mm, (1, m, n), (1, n, p)) == m * n * p
    assert total(mm, (2, 2, m, n), (2, 2, n, p)) == 4 * m * n * p
    assert total(mm, (1, m, n), (n, p)) == m * n * p
    assert total(mm, (2, m, n), (n, p)) == 2 * m * n * p


def test_fvcore_bmm():
    # test_bmm: nct,ntp->ncp with n=2, c=5, t=2, p=12: gt = n*t*p*c
    assert total(Fn(torch.bmm), (2, 5, 2), (2, 2, 12)) == 2 * 2 * 12 * 5


def test_fvcore_einsum():
    # test_einsum: "nct,ncp->ntp" (n=1, c=5, t=2, p=12): n*t*p*c; "ntg,ncg->nct" (g=6): n*t*g*c
    assert total(Fn(lambda x, y: torch.einsum("nct,ncp->ntp", x, y)), (1, 5, 2), (1, 5, 12)) == 1 * 2 * 12 * 5
    assert total(Fn(lambda x, y: torch.einsum("ntg,ncg->nct", x, y)), (1, 2, 6), (1, 5, 6)) == 1 * 2 * 6 * 5


def test_fvcore_batchnorm_is_a_stated_convention():
    # test_batchnorm: fvcore counts BatchNorm1d(10, affine=False) in eval on 10x10 as batch*input_dim = 100 "flops"
    # (one per element). dscalc's MACs are conv + linear + matmul only: 0 MACs, and the BatchNorm's 100 output
    # elements are listed under by_op_kind["batchnorm"] so the two can be reconciled.
    result = profile_model(nn.BatchNorm1d(10, affine=False).eval(), [(10, 10)])
    assert result.totals["macs"] == 0
    assert result.by_op_kind["batchnorm"]["elements"] == 10 * 10


class ThreeNet(nn.Module):
    """fvcore's ThreeNet: a 1x1 conv, adaptive average pooling, two linears."""

    def __init__(self, input_dim: int, conv_dim: int, linear_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_dim, conv_dim, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear1 = nn.Linear(conv_dim, linear_dim)
        self.linear2 = nn.Linear(linear_dim, 1)

    def forward(self, x):
        return self.linear2(self.linear1(torch.flatten(self.pool(self.conv(x)), 1)))


def test_fvcore_three_net():
    # test_threeNet / test_flop_counter_class: batch 4, input 2, conv 5, spatial 10, linear 3:
    # conv = 4*5*2*10*10 = 4,000, linear1 = 4*5*3 = 60, linear2 = 4*3*1 = 12; fvcore also counts the pool
    # (flop1 // input_dim = 2,000), which dscalc does not (no MACs)
    result = by_module(ThreeNet(2, 5, 3), (4, 2, 10, 10))
    assert result == {"": 4_000 + 60 + 12, "conv": 4_000, "linear1": 60, "linear2": 12}


def test_fvcore_torch_mm_handles():
    # TestFlopCountHandles.test_torch_mm: torch.mm and torch.matmul of 3x4 and 4x5 both count 60
    assert total(Fn(torch.mm), (3, 4), (4, 5)) == 60
    assert total(Fn(torch.matmul), (3, 4), (4, 5)) == 60


# --- fvcore tests/test_jit_model_analysis.py ----------------------------------------------------------------------

class NestedNetInnerModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1)
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        x = self.conv(x.reshape(-1, 2, 5))
        return 3 * self.fc(torch.flatten(x, 1)) + 1


class NestedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.submod = NestedNetInnerModule()
        self.fc = nn.Linear(20, 10)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.submod(self.fc(torch.flatten(self.conv(x), 1))) ** 2


def test_fvcore_nested_net_by_module():
    # test_by_module: fc 20*10 = 200; conv: spatial_pos 5 * k 3 * 4 * 4 = 240; submod.fc 100; submod.conv
    # 5*1*2*2 = 20; submod 120; "" 560
    assert by_module(NestedNet(), (1, 4, 5)) == {"": 560, "fc": 200, "conv": 240, "submod": 120, "submod.fc": 100,
                                                 "submod.conv": 20}


class UnusedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.unused = nn.Linear(10, 10), nn.Linear(10, 1), nn.Linear(20, 20)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_fvcore_unused_module():
    # test_unused_module: fc1 100 + fc2 10; the unused Linear(20, 20) counts 0 (its 420 params are still params)
    result = profile_model(UnusedNet(), [(1, 10)])
    assert result.totals["macs"] == 110
    rows = {r.name: r for r in result.rows}
    assert rows["unused"].macs == 0 and rows["unused"].params == 420


class RepeatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x):
        for _ in range(3):
            x = self.fc1(x)
        for _ in range(2):
            x = self.fc2(x)
        return x


def test_fvcore_repeated_module():
    # test_repeated_module: fc1 called 3 times (3*100), fc2 twice (2*100)
    assert by_module(RepeatedNet(), (1, 10)) == {"": 500, "fc1": 300, "fc2": 200}


class NonForwardInnerModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return x

    def other_func(self, x):
        return self.fc(x)


class NonForwardNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.submod = NonForwardInnerModule()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        return self.submod.other_func(self.fc(x))


def test_fvcore_non_forward_call():
    # test_non_forward_func_call (ancestor_mode "caller"): submod.fc 10, fc 100, total 110 - submod itself is never
    # called, so its fc is attributed to submod.fc, the module whose forward ran
    assert by_module(NonForwardNet(), (1, 10)) == {"": 110, "fc": 100, "submod": 10, "submod.fc": 10}


class SharedInnerModule(nn.Module):
    def __init__(self, submod: nn.Module) -> None:
        super().__init__()
        self.submod = submod

    def forward(self, x):
        return self.submod(x)


class SharedModuleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        inner = nn.Linear(10, 10)
        self.submod1 = SharedInnerModule(inner)
        self.submod2 = SharedInnerModule(inner)
        multiname = nn.Linear(10, 1)
        self.multiname1 = multiname
        self.multiname2 = multiname

    def forward(self, x):
        x = self.submod1(x) + self.submod2(x)
        return self.multiname1(x) + self.multiname2(x)


def test_fvcore_shared_module():
    # test_shared_module: 220 in all; the shared Linear(10, 10) runs twice, both under its first (canonical) name
    # submod1.submod (200); the Linear(10, 1) known as multiname1 and multiname2 runs twice under multiname1 (20).
    # Its parameters count once: 110 + 11.
    model = SharedModuleNet()
    result = profile_model(model, [(1, 10)])
    rows = {r.name: r for r in result.rows}
    assert result.totals["macs"] == 220
    assert rows["submod1.submod"].macs == rows["submod1.submod (call 2)"].macs == 100  # one row per call
    assert rows["multiname1"].macs == rows["multiname1 (call 2)"].macs == 10
    assert "submod2.submod" not in rows and "multiname2" not in rows
    assert result.totals["params"] == sum(p.numel() for p in model.parameters()) == 121
    assert sum(r.params for r in result.rows) == 121


class RecursiveScopeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x, count: int = 3):
        if count > 0:
            return self(x, count - 1)
        return self.fc(x)


def test_fvcore_recursive_scope():
    # test_recursive_scope: the model calls itself three times before its fc: 10 MACs, all under fc
    assert by_module(RecursiveScopeNet(), (1, 10)) == {"": 10, "fc": 10}


# --- torch test/test_flop_counter.py (FLOPs / 2) ------------------------------------------------------------------

def test_torch_flop_counter_variety():
    # test_flop_counter_variety: mm 4x5x6, addmm 4x5x6, matmul 5x6x7, einsum 6x7x8 and Linear(9, 10) on 8x9:
    # 3,012 FLOPs = 1,506 MACs
    lin = nn.Linear(9, 10)

    def f(a, b, c, d, e, f_, g, h, i, j):
        torch.mm(a, b)
        torch.addmm(c, d, e, beta=0.5, alpha=0.5)
        torch.matmul(f_, g)
        torch.einsum("ab,bc->ac", h, i)
        return lin(j)

    model = Fn(f)
    model.lin = lin
    shapes = [(4, 5), (5, 6), (4, 6), (4, 5), (5, 6), (5, 6), (6, 7), (6, 7), (7, 8), (8, 9)]
    assert total(model, *shapes) == 3_012 // 2


@pytest.mark.parametrize("fn,shapes,flops", [
    (torch.mm, [(4, 5), (5, 6)], 240),                                       # 4 * 6 * 2 * 5
    (torch.bmm, [(3, 4, 5), (3, 5, 6)], 720),                                # 3 * 4 * 6 * 2 * 5
    (lambda s, a, b: torch.addmm(s, a, b), [(4, 6), (4, 5), (5, 6)], 240),
    (lambda s, a, b: torch.addmm(s, a, b), [(4, 1), (4, 5), (5, 6)], 240),   # (broadcast bias)
    (lambda s, a, b: torch.addmm(s, a, b), [(6,), (4, 5), (5, 6)], 240),
    (lambda s, a, b: torch.baddbmm(s, a, b), [(3, 4, 6), (3, 4, 5), (3, 5, 6)], 720),
    (lambda x, w: torch.conv2d(x, w, padding=1), [(2, 3, 6, 6), (6, 3, 4, 4)], 28_800),
    (lambda x, w: torch.conv1d(x, w, padding=1), [(2, 3, 6), (6, 3, 4)], 1_440),
])
def test_torch_flop_counter_op(fn, shapes, flops):
    # test_op: each call's FLOPs as that test asserts them
    assert total(Fn(fn), *shapes) * 2 == flops


def test_torch_flop_counter_convs():
    # test_convs: conv_transpose2d of 1x1x2x2 with a 2x2 kernel: 32 forward FLOPs; a 1x1 conv2d on 1x1x2x2: 8
    assert total(Fn(torch.nn.functional.conv_transpose2d), (1, 1, 2, 2), (1, 1, 2, 2)) * 2 == 32
    assert total(Fn(torch.conv2d), (1, 1, 2, 2), (1, 1, 1, 1)) * 2 == 8


def test_torch_flop_counter_conv_transpose_loop():
    # test_conv_transpose_loop: ConvTranspose2d(4, 8, 2x2, stride 2) on 1x4x30x2, 50 times forward + backward =
    # 1,536,000 FLOPs; the input needs no gradient, so each iteration is the forward and the grad-weight, equal:
    # 1,536,000 / 50 / 2 = 15,360 forward FLOPs = 7,680 MACs (4 * 8 * 4 taps * 60 input pixels)
    assert total(nn.ConvTranspose2d(4, 8, (2, 2), stride=2), (1, 4, 30, 2)) == 1_536_000 // 50 // 2 // 2


def test_torch_flop_counter_module_layer1():
    # test_module: resnet18's layer1 convolutions, forward: 924,844,032 FLOPs = 462,422,016 MACs
    tv = pytest.importorskip("torchvision")
    result = profile_model(tv.models.resnet18(), [(1, 3, 224, 224)], depth=1)
    assert next(r for r in result.rows if r.name == "layer1").macs * 2 == 924_844_032


def test_torch_flop_counter_torchscript():
    # test_torchscript: a scripted function counts as the unscripted one: mm of 5x5 = 125 MACs (250 FLOPs)
    def foo(x):
        return torch.mm(x, x)

    scripted = torch.jit.script(foo)
    assert total(Fn(foo), (5, 5)) == total(Fn(scripted), (5, 5)) == 125


class Foo(nn.Module):
    def forward(self, x):
        x = x["a"].relu_()
        return {"a": torch.mm(x, x)}


class PytreeMod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Foo(), Foo()

    def forward(self, x):
        return self.b(self.a({"a": x}))


def test_torch_flop_counter_pytrees():
    # test_pytrees: Mod's two mm of 10x10 are 12,000 FLOPs with their backward (a forward mm of 2,000 FLOPs has a
    # backward of 4,000): 12,000 / 3 = 4,000 forward FLOPs = 2,000 MACs; Mod2's one mm 6,000 -> 1,000 MACs.
    # Both return containers (a dict, a tuple).
    result = profile_model(PytreeMod(), [(10, 10)])
    assert result.totals["macs"] == 12_000 // 3 // 2 and result.outputs == [(10, 10)]
    assert total(Fn(lambda x: (torch.mm(x, x),)), (10, 10)) == 6_000 // 3 // 2
