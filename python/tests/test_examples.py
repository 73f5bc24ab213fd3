import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(ROOT.rglob("*.py"))  # python/examples/snakefish/ too


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(e.relative_to(ROOT).with_suffix("")) for e in EXAMPLES])
def test_example_runs(example):
    r = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=50,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    if example.stem == "pi":
        assert r.stdout.splitlines()[1].startswith("3.14159")
