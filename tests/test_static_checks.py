"""ruff and mypy over the code, as part of the test run: a lint or type error fails it.

Both read their settings from pyproject.toml ([tool.ruff], [tool.mypy]: strict for the
modules of kimchi, kimchid and workers but those it lists, with why).  The planted tests
prove the checks bite: a file with an error of each kind, checked with the same settings,
fails them.  docs/checks.md says how to run them by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["kimchi", "kimchid", "workers", "tests", "bench"]
CONFIG = ROOT / "pyproject.toml"


def _tool(name: str) -> str:
    """The checker installed beside this Python (the test extra installs them), else the
    one on PATH; failing, not skipping, when neither is there."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' "
                    "(./kimchi.sh test installs it)")
    return found


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "MYPY_FORCE_COLOR": "0", "TERM": "dumb"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_ruff_finds_nothing() -> None:
    run = _run([_tool("ruff"), "check", "--no-cache", *CHECKED], ROOT)
    assert run.returncode == 0, "ruff check failed:\n" + run.stdout + run.stderr


def test_mypy_finds_nothing() -> None:
    # its cache in the checkout (.mypy_cache, ignored by git): a second run takes seconds
    run = _run([_tool("mypy"), *CHECKED], ROOT)
    assert run.returncode == 0, "mypy failed:\n" + run.stdout + run.stderr


# -- the checks bite --------------------------------------------------------------------

PLANTED = '''\
import os


def double(x: int) -> int:
    return x * 2


count: int = double("two")
'''

UNTYPED = '''\
def double(x):
    return x * 2
'''


def test_ruff_fails_on_a_planted_error(tmp_path: Path) -> None:
    (tmp_path / "planted.py").write_text(PLANTED)
    run = _run([_tool("ruff"), "check", "--no-cache", "--config", str(CONFIG), "planted.py"],
               tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "F401" in run.stdout and "planted.py" in run.stdout, run.stdout


def test_mypy_fails_on_a_planted_error_and_is_strict_in_the_packages(tmp_path: Path) -> None:
    # laid out as the checkout is: kimchid/ (strict) and tests/ (not), both with the
    # project's settings, run from their parent as in the checkout
    (tmp_path / "kimchid").mkdir()
    (tmp_path / "kimchid" / "__init__.py").write_text("")
    (tmp_path / "kimchid" / "planted.py").write_text(PLANTED)
    (tmp_path / "kimchid" / "untyped.py").write_text(UNTYPED)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "untyped.py").write_text(UNTYPED)
    mypy = [_tool("mypy"), "--config-file", str(CONFIG), "--cache-dir", str(tmp_path / "cache")]

    run = _run([*mypy, "kimchid/planted.py"], tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'Argument 1 to "double" has incompatible type "str"' in run.stdout, run.stdout

    # strict where the configuration says so: an unannotated function is an error in
    # a package module, not in a test
    run = _run([*mypy, "kimchid/untyped.py"], tmp_path)
    assert run.returncode == 1 and "no-untyped-def" in run.stdout, run.stdout + run.stderr
    run = _run([*mypy, "tests/untyped.py"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
