"""The daemon and the workers depend on the shared core (``kimchi``) and never on each
other; the core depends on neither."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"kimchi": {"kimchid", "workers"}, "kimchid": {"workers"}, "workers": {"kimchid"}}


def imported(path: Path) -> set[str]:
    """The top-level packages a module imports (at any depth of its code)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = {str(p.relative_to(ROOT)): sorted(imported(p) & FORBIDDEN[package])
             for p in sorted((ROOT / package).rglob("*.py"))}
    assert {p: w for p, w in wrong.items() if w} == {}


def test_no_module_runs_another_packages_code() -> None:
    """``python -m`` counts too: the workers start ``kimchi.orphan_guard``, not a module of
    the daemon.  The daemon starts its embedded workers by their program,
    ``workers.main``, and nothing else of theirs."""
    allowed = {"kimchid": {"workers.main"}}
    for package, forbidden in FORBIDDEN.items():
        for p in (ROOT / package).rglob("*.py"):
            for module in re.findall(r'"-m",\s*"([\w.]+)"', p.read_text()):
                if module in allowed.get(package, set()):
                    continue
                assert module.split(".")[0] not in forbidden, f"{p} runs {module}"
