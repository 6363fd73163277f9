"""The event stream: one job seen the same over REST, WebSocket and SSE; exact resume; reset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import websocket

from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, wait_for
from tests.eventclients import recv_until, start_readers


def _ws(k: Kimchi, query: str = "") -> websocket.WebSocket:
    ws = websocket.create_connection(f"{k.ws_url}/events{query}", timeout=10,
                                     header=k.ws_headers)
    return ws



def _sse(k: Kimchi, headers: dict[str, str] | None = None, query: str = "") -> requests.Response:
    h = {"Accept": "text/event-stream", **(headers or {})}
    return requests.get(f"{k.url}/events{query}", headers=h, stream=True, timeout=10,
                        auth=k.auth)


def _sse_events(resp: requests.Response, stop: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sse_id = None
    for raw in resp.iter_lines(decode_unicode=True):
        line = raw if isinstance(raw, str) else raw.decode()
        if line.startswith("id: "):
            sse_id = line[4:]
        elif line.startswith("data: "):
            ev = json.loads(line[6:])
            assert ev.get("id") == sse_id or ev["type"] == "reset"
            out.append(ev)
            sse_id = None
            if stop(ev):
                break
    resp.close()
    return out


def test_rest_websocket_and_sse_see_the_same_scan(kimchi: Kimchi, iso_tree: Path):
    ws = _ws(kimchi)
    sse = _sse(kimchi)
    task = kimchi.post("/isos/scan", {"path": str(iso_tree)}).json()
    ended = lambda ev: ev["type"] == "task.finished" and ev["data"]["id"] == task["id"]  # noqa: E731
    over_ws = recv_until(ws, ended)
    over_sse = _sse_events(sse, ended)
    ws.close()
    rest = kimchi.get(f"/tasks/{task['id']}").json()

    mine = lambda evs: [e for e in evs if e["id"] and (  # noqa: E731
        e["data"].get("id") == task["id"] or e["data"].get("task") == task["id"])]
    assert [e["id"] for e in mine(over_ws)] == [e["id"] for e in mine(over_sse)]
    types = [e["type"] for e in mine(over_ws)]
    assert types[0] == "task.created" and types[-1] == "task.finished"
    assert types.count("iso.found") == 4
    assert mine(over_ws)[-1]["data"] == rest  # the final event carries the task as REST shows it
    assert rest["status"] == "finished"


def test_websocket_resume_after_disconnect_has_no_gap_and_no_duplicate(kimchi: Kimchi, redis_db):
    bus = SyncBus(connect(redis_db.url))
    cursor = kimchi.get("/tasks").headers["Events-Cursor"]
    task_id = bus.submit("diag.progress", {"count": 300, "every": 0.002})
    query = f"?types=task.*&task={task_id}"
    got: list[dict[str, Any]] = []
    ws = _ws(kimchi, query + f"&since={cursor}")
    got += recv_until(ws, lambda e: False, limit=40)
    ws.close()  # drop mid-stream, while the job still publishes
    ws = _ws(kimchi, query + f"&since={got[-1]['id']}")
    got += recv_until(ws, lambda e: e["type"] == "task.finished")
    ws.close()

    stream = [e for e in bus.events(cursor, count=100000) if e["data"].get("id") == task_id]
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)), "duplicate events after resume"
    assert ids == [e["id"] for e in stream], "gap or reordering after resume"
    assert sum(e["type"] == "task.progress" for e in got) >= 100


def test_sse_resumes_from_last_event_id(kimchi: Kimchi, redis_db):
    bus = SyncBus(connect(redis_db.url))
    task_id = bus.submit("diag.progress", {"count": 50, "every": 0.001})
    bus.wait(task_id)
    all_events = kimchi.get(f"/events?since=0&task={task_id}").json()
    middle = all_events[len(all_events) // 2]["id"]
    resp = _sse(kimchi, {"Last-Event-ID": middle}, f"?task={task_id}")
    rest = _sse_events(resp, lambda e: e["type"] == "task.finished")
    assert [e["id"] for e in rest] == [e["id"] for e in all_events[len(all_events) // 2 + 1:]]


def test_json_page_mode_and_filters(kimchi: Kimchi, redis_db):
    bus = SyncBus(connect(redis_db.url))
    a = bus.submit("diag.noop")
    b = bus.submit("diag.progress", {"count": 5, "every": 0.001})
    bus.wait(a)
    bus.wait(b)
    page = kimchi.get("/events?since=0&types=task.created,task.fin*").json()
    assert {e["type"] for e in page} == {"task.created", "task.finished"}
    assert len(page) == 4
    only_b = kimchi.get(f"/events?since=0&task={b}").json()
    assert only_b and all(e["data"]["id"] == b for e in only_b)
    first_two = kimchi.get("/events?since=0&limit=2").json()
    after = kimchi.get(f"/events?since={first_two[-1]['id']}&limit=2").json()
    assert [e["id"] for e in first_two + after] == [e["id"] for e in
                                                    kimchi.get("/events?since=0&limit=4").json()]
    for bad in ("since=abc", "since=1-2-3", "types=task.%3Cscript%3E", "limit=0", "bogus=1"):
        r = kimchi.get(f"/events?{bad}")
        assert r.status_code == 400, bad
        assert r.json()["errcode"].startswith("KCH")


def test_a_page_reads_a_bounded_part_of_the_stream_and_links_to_the_rest(kimchi_factory,
                                                                         redis_db):
    # 20 pages of 5 events: an answer reads at most 100 events, matching or not
    k = kimchi_factory(redis_url=redis_db.url, extra={"events": {"page_size": 5}})
    bus = SyncBus(connect(redis_db.url))
    tasks = [bus.submit("diag.noop") for _ in range(60)]
    for t in tasks:
        bus.wait(t)
    everything = k.get("/events?since=0&limit=10000").json()
    assert len(everything) < 200  # 10,000 asked, one answer holds what 100 reads found
    stream = bus.events("0", count=100000)
    wanted = [e for e in stream if e["data"].get("id") == tasks[-1]]
    assert wanted
    got, url, answers = [], "/events?since=0&task=" + tasks[-1], 0
    while url:
        r = k.get(url)
        assert r.status_code == 200, r.text
        got += r.json()
        answers += 1
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else ""
        assert 'rel="next"' in (link or 'rel="next"')
    # one answer per 100 events read, the first ones holding only events of other tasks
    assert answers >= max(2, len(stream) // 100), (answers, len(stream))
    assert [e["id"] for e in got] == [e["id"] for e in wanted]


def test_since_older_than_what_is_kept_gets_a_reset(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, extra={"events": {"max_len": 10}})
    bus = SyncBus(connect(redis_db.url), maxlen=10)
    first = bus.submit("diag.noop")
    bus.wait(first)
    oldest = bus.events("0")[0]["id"]
    for _ in range(100):  # push the oldest events out (trimming is by whole stream nodes)
        bus.submit("diag.noop")
    wait_for(lambda: k.get(f"/events?since={oldest}").json()[0]["type"] == "reset",
             what="trimming")
    ws = _ws(k, f"?since={oldest}")
    assert json.loads(ws.recv()) == {"type": "reset"}
    ws.close()
    resp = _sse(k, {"Last-Event-ID": oldest})
    assert _sse_events(resp, lambda e: True) == [{"type": "reset"}]
    # since=0 means "everything still kept", never a reset
    assert k.get("/events?since=0").json()[0]["type"] != "reset"


def test_many_watchers_each_get_every_event_once(kimchi: Kimchi, redis_db):
    bus = SyncBus(connect(redis_db.url))
    cursor = kimchi.get("/tasks").headers["Events-Cursor"]
    sockets = [_ws(kimchi, f"?since={cursor}&types=task.*") for _ in range(20)]
    task_id = bus.submit("diag.progress", {"count": 100, "every": 0.001})
    threads, results = start_readers(sockets)
    for t in threads:
        t.join(30)
    expected = [e["id"] for e in bus.events(cursor, 100000) if e["type"].startswith("task.")
                and e["data"].get("id") == task_id]
    assert all(r == expected for r in results)
    for s in sockets:
        s.close()
