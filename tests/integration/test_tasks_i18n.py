"""The messages of tasks in the reader's language, on a real kimchid (libvirt's test
driver), its worker processes and Redis: what ``GET /tasks/<id>``, ``GET /tasks`` and a
202 answer say follows ``Accept-Language`` (and the ``kimchi_lang`` cookie) as an error's
reason does, a failed task's reason too; the events keep the English text beside its
template and values, for the UI to translate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kimchi.bus.sync import SyncBus, connect
from tests.authfixtures import PamUsers
from tests.conftest import Kimchi, RedisServer, wait_for

PT = {"Accept-Language": "pt-BR"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
           pam_users: PamUsers) -> Iterator[Kimchi]:
    """One kimchid with one embedded worker for the module."""
    redis_server.emptied()
    k = Kimchi(tmp_path_factory.mktemp("tasks-i18n") / "kimchi", redis_url=redis_server.url,
               workers=1, auth=(pam_users.admin.name, pam_users.admin.password))
    k.start()
    yield k
    k.stop()


@pytest.fixture(scope="module")
def bus(redis_server: RedisServer) -> SyncBus:
    return SyncBus(connect(redis_server.url))


def task(k: Kimchi, task_id: str, **headers: str) -> tuple[dict[str, Any], Any]:
    r = k.get(f"/tasks/{task_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json(), r.headers


def test_a_scans_messages_come_in_the_readers_language(daemon: Kimchi, iso_tree: Path):
    k = daemon
    wait_for(lambda: k.get("/hosts/local").json()["workers"] == 1, what="the worker")
    answer = k.post("/isos/scan", {"path": str(iso_tree)}, headers=PT)
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    # the 202's task, as the scan was queued: its message in Portuguese
    if queued["attempt"] == 0:
        assert queued["message"] == "Aguardando um worker"
        assert queued["message_id"] == "Waiting for a worker"
        assert answer.headers["Content-Language"] == "pt-BR"
    done = k.wait_task(queued["id"])
    assert done["status"] == "finished"

    english, headers = task(k, done["id"])
    args = english["message_args"]
    for key in ("isos", "files", "skipped", "dirs"):
        assert args[key] == done["result"][key], key
    assert args["isos"] == 4
    assert english["message"] == (f"Found 4 ISO images in {args['files']} files "
                                  f"({args['skipped']} skipped)")
    assert english["message_id"] == "Found {isos} ISO images in {files} files ({skipped} " \
                                    "skipped)"
    assert english["errcode"] is None and "Content-Language" not in headers

    pt, headers = task(k, done["id"], **PT)
    assert pt["message"] == (f"4 imagens ISO encontradas em {args['files']} arquivos "
                             f"({args['skipped']} ignorados)")
    assert headers["Content-Language"] == "pt-BR"
    assert {**pt, "message": english["message"]} == english  # only the message changes
    zh, _ = task(k, done["id"], **ZH)
    assert zh["message"] == (f"在 {args['files']} 个文件中找到 4 个 ISO 镜像（跳过 "
                             f"{args['skipped']} 个）")
    # the user's choice (the UI's language menu) goes first
    chosen, _ = task(k, done["id"], **PT, Cookie="kimchi_lang=zh-CN")
    assert chosen["message"] == zh["message"]

    listed = k.get("/tasks?kind=iso.scan", headers=PT)
    assert listed.headers["Content-Language"] == "pt-BR"
    assert [t["message"] for t in listed.json() if t["id"] == done["id"]] == [pt["message"]]

    # the events keep the English text, the template and its values: the UI translates
    events = k.get(f"/events?since=0&task={done['id']}", headers=PT).json()
    progress = [e["data"] for e in events if e["type"] == "task.progress"]
    assert progress and all(p["message_id"].startswith("Scanned {files} files")
                            for p in progress)
    assert progress[-1]["message"].startswith("Scanned ")
    assert progress[-1]["message_args"]["isos"] == 4
    end = [e["data"] for e in events if e["type"] == "task.finished"]
    assert end[0]["message"] == english["message"]
    assert end[0]["message_args"] == args


def test_a_running_tasks_progress_is_translated(daemon: Kimchi, bus: SyncBus):
    k = daemon
    running = bus.submit("diag.sleep", {"seconds": 30.0, "steps": 60})
    try:
        seen: dict[str, Any] = {}

        def stepping() -> bool:
            t, _ = task(k, running, **PT)
            seen.update(t)
            return t["message_id"] == "step {step} of {steps}"

        wait_for(stepping, timeout=20, what="the sleep's first steps")
        step = seen["message_args"]["step"]
        assert seen["message_args"]["steps"] == 60
        assert seen["message"].startswith("passo ") and seen["message"].endswith(" de 60")
        assert seen["details"]["step"] >= step  # the job's details stay as they were
    finally:
        k.delete(f"/tasks/{running}")
    cancelled = k.wait_task(running)
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "Cancelled"
    assert task(k, running, **PT)[0]["message"] == "Cancelada"
    assert task(k, running, **ZH)[0]["message"] == "已取消"


def test_a_failed_tasks_reason_is_translated_and_its_errcode_kept(daemon: Kimchi,
                                                                   bus: SyncBus):
    k = daemon
    failing = bus.submit("diag.fail", {"error": "the disk is on fire"})
    done = k.wait_task(failing)
    assert done["status"] == "failed"
    assert done["message"] == "KCHTASK0005E: Job failed: RuntimeError: the disk is on fire"
    assert done["errcode"] == "KCHTASK0005E"
    assert done["message_args"] == {"error": "RuntimeError: the disk is on fire"}
    pt, headers = task(k, failing, **PT)
    assert pt["message"] == "KCHTASK0005E: O job falhou: RuntimeError: the disk is on fire"
    assert pt["errcode"] == "KCHTASK0005E" and headers["Content-Language"] == "pt-BR"
    zh, _ = task(k, failing, **ZH)
    assert zh["message"].startswith("KCHTASK0005E: ") and zh["message"] != done["message"]
    assert zh["message"].endswith("RuntimeError: the disk is on fire")
    # the event that ended it: English, with the errcode and its values
    ended = [e for e in k.get(f"/events?since=0&task={failing}").json()
             if e["type"] == "task.failed"]
    assert ended[0]["data"]["errcode"] == "KCHTASK0005E"
    assert ended[0]["data"]["message"] == done["message"]
