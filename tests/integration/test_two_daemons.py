"""Two kimchid serving the same hosts, as behind one address: one Redis (sessions, tasks,
events), one objects folder, one libvirtd (its own, serving the test driver, so both
daemons see the same VMs).  ``kill -9`` of the daemon running a job loses no task: the
other takes the job over once its lease has expired and finishes it."""

from __future__ import annotations

from pathlib import Path

import psutil
import requests

from tests.conftest import Kimchi, wait_for
from tests.integration.test_vm_create import _template, iso  # noqa: F401  (a fixture)
from tests.libvirtd_private import PrivateLibvirtd, own_libvirtd  # noqa: F401  (a fixture)


def test_a_kill_9_of_the_daemon_running_a_job_loses_no_task(
        kimchi_factory, redis_db, own_libvirtd: PrivateLibvirtd, iso: Path,  # noqa: F811
        tmp_path: Path):
    shared = {"libvirt": {"uri": own_libvirtd.uri},
              "paths": {"objects_dir": str(tmp_path / "objects")}}
    slow = {"KIMCHI_FAULT_SLOW_REPORTS": "1.0"}  # each step of the creation takes a second
    a: Kimchi = kimchi_factory("a", redis_url=redis_db.url, workers=0, extra=shared, env=slow)
    b: Kimchi = kimchi_factory("b", redis_url=redis_db.url, workers=0, extra=shared, env=slow)
    _template(a, iso, disks=[{"index": i, "size": 1} for i in range(3)])
    wait_for(lambda: b.get("/templates/f39").status_code == 200, what="B to see the template")

    # a session made on one daemon is good on the other
    assert a.auth is not None and a.proc is not None and b.proc is not None
    login = requests.post(a.url + "/login", json={"username": a.auth[0],
                                                  "password": a.auth[1]}, timeout=20)
    cookie = {"kimchi_session": str(login.cookies["kimchi_session"])}
    assert requests.get(b.url + "/session", cookies=cookie, timeout=10).status_code == 200

    task = a.post("/vms", {"template": "f39", "name": "survivor"}).json()
    running = wait_for(lambda: (lambda t: t["worker"] and "Creating disk" in t["message"]
                                and t)(a.get(f"/tasks/{task['id']}").json()),
                       what="the creation to start")
    owner, other = (a, b) if running["worker"].endswith(f"-{a.proc.pid}") else (b, a)
    assert owner.proc is not None and other.proc is not None
    assert running["worker"].endswith(f"-{owner.proc.pid}")
    psutil.Process(owner.proc.pid).kill()  # kill -9, in the middle of the job
    owner.proc.wait(10)

    done = other.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished", done
    assert done["attempt"] == 2 and done["worker"].endswith(f"-{other.proc.pid}")
    vm = other.get("/vms/survivor").json()
    assert vm["state"] == "shutoff"
    disks = sorted(Path(d["path"]).name for d in vm["disks"] if d["device"] == "disk")
    assert disks == [f"survivor-{i}.qcow2" for i in range(3)]  # each volume once, none left
    events = other.get(f"/events?since=0&task={task['id']}&types=task.*").json()
    assert [e["type"] for e in events if e["type"] in ("task.finished", "task.failed")] == [
        "task.finished"]
