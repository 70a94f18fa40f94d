"""The documented Python API: the README's and the module docstring's examples run as written."""

import doctest
import re
from pathlib import Path

import dscalc.cost.layers


def test_module_docstring_examples():
    assert doctest.testmod(dscalc.cost.layers, raise_on_error=True).attempted > 0


def test_readme_python_examples():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        test = doctest.DocTestParser().get_doctest(block, {}, "README", "README.md", 0)
        runner = doctest.DocTestRunner()
        runner.run(test)
        assert runner.failures == 0 and runner.tries > 0
