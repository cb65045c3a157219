"""The README's Python examples run as written (except those marked as needing the network)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
OFFLINE = [b for b in BLOCKS if "needs network" not in b]


def test_readme_has_offline_examples():
    assert len(OFFLINE) >= 2 and len(BLOCKS) > len(OFFLINE)


@pytest.mark.parametrize("index", range(len(OFFLINE)))
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(OFFLINE[index], f"README.md python block {index}", "exec"), namespace)
    assert namespace  # the block defined names; its own asserts checked the results
