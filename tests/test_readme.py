"""The README's example outputs are what dscalc prints today (80 columns, colour off); `pytest tests/test_readme.py
--overwrite` rewrites them. Each block also keeps figures that were derived independently (in the README's text or
the tests named there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_in_process
from test_network import USER_SPEC

README = Path(__file__).parents[1] / "README.md"

# (the text just before the block, the command, the part of the output shown, figures it must contain)
BLOCKS = [
    ("gives (worked by hand in `tests/test_network.py`) 540,992 MACs, 2,432 weights, 2,528 params, 96 buffers:\n\n"
     "```\n", ["network", "{tiny}"], "all", ["540,992", "2,432", "2,528"]),
    ("The end of `dscalc network mobilenet_v1 --alpha 0.5` (the per-layer table comes first):\n\n```\n",
     ["network", "mobilenet_v1", "--alpha", "0.5"], "totals", ["149,497,088"]),
    ("```\n$ dscalc profile torchvision:resnet18 --input 1x3x224x224 --depth 1 --check fvcore\n",
     ["profile", "torchvision:resnet18", "--input", "1x3x224x224", "--depth", "1", "--check", "fvcore"], "all",
     ["1,814,073,344", "11,689,512"]),  # torchvision's metadata: 1.814 GMACs (_ops), 11,689,512 params
]


@pytest.mark.parametrize("marker,args,part,figures", BLOCKS, ids=[b[1][1] for b in BLOCKS])
def test_readme_output_is_current(marker, args, part, figures, tmp_path, request, monkeypatch):
    if args[0] == "profile":
        pytest.importorskip("torchvision")
    (tmp_path / "tiny.yaml").write_text(USER_SPEC)
    monkeypatch.chdir(tmp_path)
    r = run_in_process(*[a.format(tiny="tiny.yaml") for a in args])
    assert r.code == 0, r.stderr
    out = r.stdout
    if part == "totals":  # from the totals title on
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == "totals")
        out = "\n".join(["", *lines[start:]]) + "\n"
    readme = README.read_text()
    begin = readme.index(marker) + len(marker)
    end = readme.index("```", begin)
    shown = readme[begin:end]
    if request.config.getoption("--overwrite"):
        README.write_text(readme[:begin] + out + readme[end:])
        return
    assert [line.rstrip() for line in out.splitlines()] == [line.rstrip() for line in shown.splitlines()]
    for figure in figures:
        assert figure in shown
