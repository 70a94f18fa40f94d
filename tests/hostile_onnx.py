"""Hostile ONNX files (issue 23), each built here with onnx.helper under the case's folder: Einsum equations that
send ONNX's shape inference into an endless loop, shape-arithmetic bombs (a 150-byte file declaring 10^8-element
constants), external data stored outside the model's folder, and malformed nodes.

`cases(tmp)` returns them as `hostile.Case`s for tests/test_onnx_hostile.py and benchmarks/bench_fuzz.py. Each case
names the file's tensor or node in `stderr_has` where dscalc must name it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostile import Case

FAMILY = "onnx"

#: elements of each bomb: 10^8 (the issue's 1.64 GB peak at 10^8 int64 elements)
BOMB = 100_000_000


def _save(path: Path, nodes: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any],
          initializers: Sequence[Any] = (), opset: int = 21) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)
    return path


def _value(name: str, dims: Any, elem: int | None = None) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT if elem is None else elem, dims)


def _floats(name: str, dims: Sequence[int], value: float = 0.5) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.full(tuple(dims), value, dtype=np.float32), name)


def _ints(name: str, values: Any) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _bare(name: str, elem: int, dims: Sequence[int]) -> Any:
    """A TensorProto with dims and no data (onnx.helper.make_tensor refuses a data length that does not match)."""
    from onnx import TensorProto

    t = TensorProto()
    t.name, t.data_type = name, elem
    t.dims.extend(dims)
    return t


def _profile(path: Path, *shapes: str) -> list[str]:
    return ["profile", str(path), *(a for s in shapes for a in ("-i", s))]


# ---------------------------------------------------------------------------------------------- einsum

def einsum(tmp: Path, equation: str, tag: str, name: str = "e") -> Path:
    """x (2, 3, 4) and y (4, 5) into one Einsum node with `equation`, saved as einsum_<tag>.onnx."""
    from onnx import helper

    node = helper.make_node("Einsum", ["x", "y"], ["z"], name=name, equation=equation)
    return _save(tmp / f"einsum_{tag}.onnx", [node], [_value("x", [2, 3, 4]), _value("y", [4, 5])],
                 [_value("z", None)])


EINSUM_HANGS = ("......,ij->ij", "a...b...,bc->ac")  # two ellipses in one term: ONNX's shape inference loops
EINSUM_BAD = ("ij,jk->ikk", "ij,jk->iz", "i$,jk->ik", "ij,jk,kl->il", "ij->i...", "i.j,jk->ik")


# ----------------------------------------------------------------------------------------------- bombs

def _with_input(nodes: list[Any], initializers: list[Any], out: str) -> tuple[list[Any], list[Any], list[Any]]:
    """A graph input x (1, 4) through Relu beside the bomb, whose output `out` is a graph output too."""
    from onnx import helper

    nodes = [*nodes, helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return nodes, [_value("x", [1, 4])], [_value("y", None), _value(out, None)]


def bombs(tmp: Path) -> dict[str, Path]:
    """Files of a few hundred bytes whose shape arithmetic, evaluated, would be 10^8 elements (0.8 GB of int64)."""
    from onnx import TensorProto, helper

    side = 10_000  # 10^4 x 10^4 = 10^8
    made = {}
    specs: dict[str, tuple[list[Any], list[Any]]] = {
        "Range": ([helper.make_node("Range", ["start", "limit", "delta"], ["bomb"], name="range")],
                  [_ints("start", 0), _ints("limit", BOMB), _ints("delta", 1)]),
        "ConstantOfShape": ([helper.make_node("ConstantOfShape", ["shape"], ["bomb"], name="fill",
                                              value=helper.make_tensor("v", TensorProto.INT64, [1], [7]))],
                            [_ints("shape", [side, side])]),
        "Expand": ([helper.make_node("Expand", ["one", "shape"], ["bomb"], name="expand")],
                   [_ints("one", [1]), _ints("shape", [side, side])]),
        "Tile": ([helper.make_node("Tile", ["row", "repeats"], ["bomb"], name="tile")],
                 [_ints("row", list(range(side))), _ints("repeats", [side])]),
        # broadcasting: two 10^4-element operands, a 10^8-element sum
        "Add": ([helper.make_node("Add", ["col", "row"], ["bomb"], name="add")],
                [_ints("col", [[i] for i in range(side)]), _ints("row", [list(range(side))])]),
        # Gather: the one row of a (1, 10^4) table picked 10^4 times: (10^4, 10^4)
        "Gather": ([helper.make_node("Gather", ["table", "idx"], ["bomb"], name="gather", axis=0)],
                   [_ints("table", [list(range(side))]), _ints("idx", [0] * side)]),
        # Concat of the same 10^4-element constant named 10^4 times (the file names it, it stores it once)
        "Concat": ([helper.make_node("Concat", ["row"] * side, ["bomb"], name="concat", axis=0)],
                   [_ints("row", list(range(side)))]),
        # a Constant node whose sparse value is 10^8 elements dense (one value stored)
        "Constant": ([helper.make_node("Constant", [], ["bomb"], name="sparse", sparse_value=helper.make_sparse_tensor(
            helper.make_tensor("v", TensorProto.INT64, [1], [7]), helper.make_tensor("i", TensorProto.INT64, [1], [5]),
            [BOMB]))], []),
    }
    for op, (nodes, inits) in specs.items():
        nodes, inputs, outputs = _with_input(nodes, inits, "bomb")
        made[op] = _save(tmp / f"bomb_{op.lower()}.onnx", nodes, inputs, outputs, inits)
    return made


# ----------------------------------------------------------------------------------------- external data

#: the external-data model: x (1, 3, 8, 8) -> a: Conv 3->4, k3, pads 1 -> (1, 4, 8, 8)
#: -> Expand to `batch` (2, 4, 8, 8) -> b: Conv 4->4, k1 -> (2, 4, 8, 8)
#: MACs by hand: a = 4 * 3 * 3*3 * 8*8 = 6,912; b = 2 * 4 * 4 * 1*1 * 8*8 = 2,048; total 8,960
EXTERNAL_MACS = 4 * 3 * 3 * 3 * 8 * 8 + 2 * 4 * 4 * 1 * 1 * 8 * 8
EXTERNAL_PARAMS = 4 * 3 * 3 * 3 + 4 * 4  # the two conv weights (the int64 shape is not a parameter)


def external_model(folder: Path, batch: int = 2, location: str = "weights.bin") -> Path:
    """The model above saved with every tensor (the weights and the Expand's shape) in `folder/location`."""
    import onnx
    from onnx import helper

    folder.mkdir(parents=True, exist_ok=True)
    nodes = [helper.make_node("Conv", ["x", "wa"], ["ya"], name="a", pads=[1, 1, 1, 1]),
             helper.make_node("Expand", ["ya", "shape"], ["ye"], name="expand"),
             helper.make_node("Conv", ["ye", "wb"], ["out"], name="b")]
    inits = [_floats("wa", (4, 3, 3, 3)), _ints("shape", [batch, 4, 8, 8]), _floats("wb", (4, 4, 1, 1))]
    graph = helper.make_graph(nodes, "g", [_value("x", [1, 3, 8, 8])], [_value("out", None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return path


def pointing(folder: Path, name: str, location: str, offset: int | str | None = None) -> Path:
    """A one-Conv model whose weight `w` (4, 3, 3, 3) says its data is at `location` (relative to the model)."""
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    w = _bare("w", TensorProto.FLOAT, [4, 3, 3, 3])
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", location
    if offset is not None:
        entry = w.external_data.add()
        entry.key, entry.value = "offset", str(offset)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [_value("x", [1, 3, 8, 8])], [_value("y", None)], [w])
    path = folder / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    return path


def outside(tmp: Path) -> dict[str, Path]:
    """Models whose external data lies outside their folder, or is no regular file, or is too short."""
    folder = tmp / "outside"
    folder.mkdir(parents=True, exist_ok=True)
    (tmp / "secret.bin").write_bytes(b"\0" * 4096)  # a readable file beside (not in) the model's folder
    (folder / "short.bin").write_bytes(b"\0" * 10)  # the weight needs 4*3*3*3*4 = 432 bytes
    (folder / "sub").mkdir(exist_ok=True)
    links = {"link_out.bin": tmp / "secret.bin", "link_zero.bin": Path("/dev/zero")}
    for name, target in links.items():
        if not (folder / name).is_symlink():
            os.symlink(target, folder / name)
    if hasattr(os, "mkfifo") and not (folder / "fifo.bin").exists():
        os.mkfifo(folder / "fifo.bin")
    spots = {"parent": "../secret.bin", "etc_passwd": "../../../../../../../../etc/passwd",
             "absolute": str(tmp / "secret.bin"), "dev_zero": "/dev/zero", "symlink_out": "link_out.bin",
             "symlink_dev_zero": "link_zero.bin", "fifo": "fifo.bin", "short": "short.bin", "directory": "sub",
             "missing": "missing.bin", "empty": "", "nul": "w\0.bin"}
    made = {name: pointing(folder, name, location) for name, location in spots.items()}
    made["bad_offset"] = pointing(folder, "bad_offset", "short.bin", offset="-5")
    made["text_offset"] = pointing(folder, "text_offset", "short.bin", offset="ten")
    made["huge_offset"] = pointing(folder, "huge_offset", "short.bin", offset="9" * 5000)
    return made


# --------------------------------------------------------------------------------------- malformed nodes

def malformed(tmp: Path, build: bool = True) -> dict[str, tuple[Path, list[str], str]]:
    """Malformed nodes: (file, --input shapes, the node's name that the message must give); with build=False only
    the names and paths (nothing written)."""
    from onnx import TensorProto, helper

    out: dict[str, tuple[Path, list[str], str]] = {}

    def add(key: str, nodes: list[Any], inputs: list[Any], inits: list[Any], shapes: list[str], node: str,
            opset: int = 21) -> None:
        path = tmp / f"bad_{key}.onnx"
        if build:
            _save(path, nodes, inputs, [_value(nodes[-1].output[0], None)], inits, opset)
        out[key] = (path, shapes, node)

    x4 = [_value("x", [1, 3, 8, 8])]
    add("conv_weight_rank", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_w2d")], x4,
        [_floats("w", (4, 3))], ["1x3x8x8"], "conv_w2d")
    add("conv_input_rank", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_x2d")], [_value("x", [1, 3])],
        [_floats("w", (4, 3, 3, 3))], ["1x3"], "conv_x2d")
    add("conv_pads_short", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_pads", pads=[1])], x4,
        [_floats("w", (4, 3, 3, 3))], ["1x3x8x8"], "conv_pads")
    add("conv_strides_short", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_strides", strides=[2])], x4,
        [_floats("w", (4, 3, 3, 3))], ["1x3x8x8"], "conv_strides")
    add("conv_kernel_attr", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_kernel", kernel_shape=[3])],
        x4, [_floats("w", (4, 3, 3, 3))], ["1x3x8x8"], "conv_kernel")
    add("conv_group_zero", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_group", group=0)], x4,
        [_floats("w", (4, 3, 3, 3))], ["1x3x8x8"], "conv_group")
    add("convtranspose_output_padding", [helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], name="deconv_op", strides=[2, 2], output_padding=[1],
        output_shape=[17, 17])], x4, [_floats("w", (3, 4, 3, 3))], ["1x3x8x8"], "deconv_op")
    add("convtranspose_pads_short", [helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], name="deconv_pads", pads=[1, 1])], x4, [_floats("w", (3, 4, 3, 3))],
        ["1x3x8x8"], "deconv_pads")
    add("gemm_rank3", [helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm3")], [_value("a", [2, 3, 4])],
        [_floats("b", (4, 5))], ["2x3x4"], "gemm3")
    add("gemm_rank1", [helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm1")], [_value("a", [4])],
        [_floats("b", (4, 5))], ["4"], "gemm1")
    raw = _bare("w", TensorProto.FLOAT, [4, 3, 3, 3])
    raw.raw_data = b"\0" * 10  # 4*3*3*3 floats = 432 bytes declared
    add("raw_data_length", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_raw")], x4, [raw], ["1x3x8x8"],
        "conv_raw")
    typed = _bare("w", TensorProto.FLOAT, [4, 3, 3, 3])
    typed.float_data.extend([0.5] * 7)  # 108 values declared, 7 stored
    add("typed_data_length", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_typed")], x4, [typed],
        ["1x3x8x8"], "conv_typed")
    shape = _bare("s", TensorProto.INT64, [2])
    shape.raw_data = b"\1" * 3  # a shape constant: 2 int64 = 16 bytes declared
    add("raw_int_length", [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_raw")], x4, [shape],
        ["1x3x8x8"], "reshape_raw")
    negative = _bare("w", TensorProto.FLOAT, [4, -3, 3, 3])
    add("negative_dims", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_neg")], x4, [negative],
        ["1x3x8x8"], "conv_neg")
    one_d = [_value(n, [8]) for n in "qkv"]
    add("attention_1d", [helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn1d", q_num_heads=2,
                                          kv_num_heads=2)], one_d, [], ["8", "8", "8"], "attn1d", opset=23)
    add("einsum_rank", [helper.make_node("Einsum", ["a", "b"], ["y"], name="einsum_rank", equation="ij,jk->ik")],
        [_value("a", [2, 3, 4]), _value("b", [4, 5])], [], ["2x3x4", "4x5"], "einsum_rank")
    add("matmul_scalar", [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm0")], [_value("a", [2, 4])],
        [_floats("b", ())], ["2x4"], "mm0")
    return out


# ------------------------------------------------------------------------------------------------ cases

def cases(tmp: Path) -> list[Case]:
    tmp.mkdir(parents=True, exist_ok=True)
    out = [Case(f"einsum {eq!r} (two ellipses in one term: ONNX's shape inference loops)",
                _profile(einsum(tmp, eq, f"hang{i}"), "2x3x4", "4x5"), 2, stderr_has="Einsum")
           for i, eq in enumerate(EINSUM_HANGS)]
    out += [Case(f"einsum {eq!r} (malformed equation)", _profile(einsum(tmp, eq, f"bad{i}"), "2x3x4", "4x5"), 2,
                 stderr_has="Einsum") for i, eq in enumerate(EINSUM_BAD)]
    out += [Case(f"{op} of 10^8 elements in shape arithmetic (counted, never evaluated)", _profile(path, "1x4"), 0)
            for op, path in bombs(tmp).items()]
    model = external_model(tmp / "external")
    decoy = tmp / "decoy"
    external_model(decoy, batch=8)  # the same layout, another batch: its weights.bin must never be read
    out += [Case("external data, run from the model's folder", _profile(model, "1x3x8x8"), 0, cwd=str(model.parent)),
            Case("external data, run from a folder holding another weights.bin", _profile(model, "1x3x8x8"), 0,
                 cwd=str(decoy))]
    out += [Case(f"external data location: {name}", _profile(path, "1x3x8x8"), 2, stderr_has="'w'")
            for name, path in outside(tmp).items()]
    out += [Case(f"malformed node: {key}", _profile(path, *shapes), 2, stderr_has=f"'{node}'")
            for key, (path, shapes, node) in malformed(tmp).items()]
    return out
