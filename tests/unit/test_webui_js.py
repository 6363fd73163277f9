"""The browser UI's JavaScript unit tests (tests/webui/*.test.mjs), run by node's own
test runner (``node --test``, node 18 or newer; ./kimchi.sh test installs it).

They import the UI's modules from webui/js/ as the browser does. Run by hand, without a
node, this test is skipped; run by ./kimchi.sh test, a missing node is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = ROOT / "tests" / "webui"
TIMEOUT = 120  # seconds, for the whole run


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("KIMCHI_TEST_RUNNER") == "kimchi.sh":
            pytest.fail("node is not installed, though ./kimchi.sh test should have installed it")
        pytest.skip("node is not installed: ./kimchi.sh test installs it")
    return node


def test_the_uis_javascript_unit_tests_pass() -> None:
    node = node_or_skip()
    files = sorted(TESTS.rglob("*.test.mjs"))
    assert files, f"no *.test.mjs in {TESTS}"
    # The files by name, not the folder: node 21 and later read --test's arguments as
    # globs, and a bare folder no longer means "the tests in it". TAP: `# pass N` to read.
    cmd = [node, "--test", "--test-reporter=tap", *(str(f.relative_to(ROOT)) for f in files)]
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                             env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired as e:
        said = b"".join(s if isinstance(s, bytes) else s.encode() for s in (e.stdout, e.stderr) if s)
        pytest.fail(f"node --test did not end within {TIMEOUT} s:\n{said.decode(errors='replace')}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"node --test exited {run.returncode}:\n{output}"
    passed = re.search(r"^# pass (\d+)$", run.stdout, re.MULTILINE)
    assert passed, f"node --test printed no '# pass N' line:\n{output}"
    assert int(passed.group(1)) >= 1, f"node --test ran no passing test:\n{output}"
