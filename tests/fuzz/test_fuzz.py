"""Fuzzing: schemathesis, from ``/openapi.json``, against a running kimchid.

The daemon is real (its Redis, two workers, PAM logins, libvirt's test driver private to
its process); schemathesis runs every operation of the spec through its phases (examples,
coverage, fuzzing, stateful: the links it infers from the answers), with ``--checks all``
but for what is named here:

- ``positive_data_acceptance`` is replaced by ``refusals_only`` (tests/fuzz/hooks.py): a
  schema-valid request may get a 400 only with a code of ``x-refusals``; every other check
  of ``all`` runs, server errors first.
- ``use_after_free`` is off for ``GET /tasks/{id}`` only (tests/fuzz/schemathesis.toml):
  a task outlives ``DELETE``, which cancels it.
- The daemon's login throttle lets a million failures through: ``ignored_auth`` sends bad
  credentials from one address hundreds of times, which the throttle exists to stop with a
  429 (tests/integration/test_login_throttle.py tests it).

Bounded: ``KIMCHI_FUZZ_SECONDS`` (default 150) for the run, ``KIMCHI_FUZZ_SEED`` to replay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, RedisServer

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("KIMCHI_FUZZ_SECONDS", "150"))
SEED = os.environ.get("KIMCHI_FUZZ_SEED", "20261206")

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]


def _st() -> str:
    st = Path(sys.executable).parent / "st"
    if not st.exists():
        pytest.fail("schemathesis is not installed (./kimchi.sh test installs the test extra)")
    return str(st)


def test_no_operation_answers_outside_its_schema(kimchi_factory: Any, redis_db: RedisServer,
                                                  tmp_path: Path, pam_users: Any) -> None:
    k = kimchi_factory(redis_url=redis_db.url,
                       extra={"auth": {"throttle_free_attempts": 1_000_000}})
    spec = k.get("/openapi.json").json()
    operations = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    reports = ARTIFACTS / "fuzz"  # kept: schemathesis' output and its JUnit report
    reports.mkdir(parents=True, exist_ok=True)
    admin = pam_users.admin
    cmd = [_st(), "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
           "run", k.url + "/openapi.json",
           "--auth", f"{admin.name}:{admin.password}",
           "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--max-time", str(SECONDS), "--max-examples", "25", "--workers", "1",
           "--seed", SEED, "--request-timeout", "20", "--suppress-health-check", "all",
           "--report", "junit", "--report-dir", str(reports),
           "--report-junit-path", str(reports / "junit.xml")]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
           "PYTHONPATH": str(HERE.parent.parent)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=SECONDS + 600)
    out = run.stdout + run.stderr
    (reports / "schemathesis.txt").write_text(out)
    assert run.returncode == 0, out[-20000:]
    # it ran every operation the spec lists, each at least once
    suite = ET.parse(reports / "junit.xml").getroot()
    tested = {tc.get("name") for tc in suite.iter("testcase")}
    assert operations <= tested, sorted(operations - tested)
    # and the daemon logged no unexpected error while it did
    assert "unexpected error" not in k.log_text(), k.log_text()[-5000:]
