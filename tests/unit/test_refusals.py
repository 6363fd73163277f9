"""Every 400 is one of two kinds, told apart by its code: a request that its schema refuses
too (``InvalidRequest``), or a refusal of a request the schema admits (``InvalidOperation``,
its codes in ``errors.REFUSALS`` and in ``/openapi.json`` as ``x-refusals``).  The fuzzing
test accepts a 400 for a schema-valid request only with a refusal's code: a code raised as
both kinds would let a schema that lies pass as a refusal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kimchi.errors import CATALOGUE, REFUSALS, InvalidOperation, InvalidRequest

ROOT = Path(__file__).resolve().parents[2]
_RAISED = re.compile(r"\b(InvalidRequest|InvalidOperation)\(\s*\"(KCH\w+)\"")


def _raised() -> dict[str, set[str]]:
    """errcode -> the classes the sources raise it with."""
    out: dict[str, set[str]] = {}
    for path in [*ROOT.glob("kimchi/**/*.py"), *ROOT.glob("kimchid/**/*.py"),
                 *ROOT.glob("workers/**/*.py")]:
        for cls, code in _RAISED.findall(path.read_text()):
            out.setdefault(code, set()).add(cls)
    return out


def test_each_code_is_raised_as_one_kind_only_and_refusals_as_invalid_operation() -> None:
    raised = _raised()
    assert len(raised) > 50  # the scan finds the raise sites
    for code, classes in raised.items():
        assert code in CATALOGUE, code
        want = "InvalidOperation" if code in REFUSALS else "InvalidRequest"
        assert classes == {want}, (code, classes)


def test_every_refusal_is_in_the_catalogue_and_raised_somewhere() -> None:
    raised = _raised()
    assert REFUSALS <= set(CATALOGUE)
    assert REFUSALS <= set(raised), sorted(REFUSALS - set(raised))


def test_the_classes_refuse_a_code_of_the_other_kind() -> None:
    with pytest.raises(ValueError):
        InvalidRequest("KCHVM0001E", name="a")  # exists: a refusal
    with pytest.raises(ValueError):
        InvalidOperation("KCHAPI0006E", error="x")  # the schema refuses it
    assert InvalidOperation("KCHVM0001E", name="a").status == 400
