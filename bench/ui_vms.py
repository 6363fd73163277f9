"""The VMs page with 1,000 and 10,000 VMs in Chromium: the current UI against a reference commit's.

Both sides run in the same benchmark, interleaved: the current tree's kimchid, and a kimchid
started from the reference commit's whole tree (``git archive REV``, default b8864a0, the
last commit with the single-file ``webui/app.js``), with the same Python.  Per N and per
side: a fresh redis-server and kimchid (no workers, login on, libvirt's test driver with a
node XML of N domains, the one of vm_list.py), then Debian's Chromium (Playwright's sync
API, 1280x800, signed in with a session cookie from ``POST /login``) opens ``/#/vms``.

An init script (``add_init_script``: CDP, so the page's CSP does not apply) installs, before
the page's own code, a ``longtask`` PerformanceObserver and a MutationObserver that notes
when the first ``#vm-list li[data-name]`` (not ``.vm-pending``) exists, then the next
animation frame and the task after it (that frame's paint is done by then).  Figures:

(a) navigation start -> first VM rows painted;
(b) the ``GET /vms`` resource entry's responseEnd -> first rows painted (target <= 300 ms);
(c) the longest task and the long-task time in all, from navigation start until the page
    has settled (no long task for a while);
(d) live load: ``vm.state`` events injected into kimchid's event stream (the bus's ``emit``
    script, as fanout.py does) at 100/s for 10 s, each flipping a VM between paused and
    running, half to the rows on screen, half spread over the list: whether the rows on
    screen then show the state last sent to them (and how soon), and the longest task and
    the number of long tasks (> 50 ms) from the first event until the page has settled
    again (target: none);
(e) filter: ``page.fill('#vm-filter', <one VM's name>)``; in the page, from the input
    event's timeStamp to the paint after the first animation frame at which ``#vm-list``
    shows only matching rows;
(f) sort: the filter cleared, "State" chosen in ``#vm-sort``: from the change event to the
    paint after the first frame whose rows on screen are in state order (the single-file UI
    has no sort: "n/a").

A side whose first rows take longer than ``--cap`` s (the single-file UI at 10,000 VMs can
take minutes on a busy machine) is reported as "> cap" and its other figures are skipped;
every read of the page is bounded (a page busy for minutes is given up on, its figures
marked ">=" or skipped).  ``--current REV`` measures a commit's tree instead of the
working tree (with the reference's own commit: an A/A run, the noise between two runs).

    python bench/ui_vms.py [--quick] [--plain] [--reference REV] [--vms 1000,10000] [--reps N]
                           [--live S] [--rate R] [--cap S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median  # noqa: E402
from vm_list import node_xml  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # as tests/browser/conftest.py
STREAM = "kimchi:events"
TARGET_AFTER_VMS_MS = 300.0  # (b)
TARGET_LIVE_TASK_MS = 50.0  # (d): a long task is one over 50 ms, so: no long task at all
ROW = "#vm-list li[data-name]:not(.vm-pending)"

# Installed before the page's own code, in every document of the context.
INIT_JS = """(() => {
  if (window.__kbench) return;
  const B = window.__kbench = { longtasks: [], rowsDom: null, rowsRaf: null, rowsPainted: null,
                                longtaskError: null, filter: null };
  const take = (entries) => {
    for (const e of entries) B.longtasks.push([e.startTime, e.duration]);
  };
  try {
    const obs = new PerformanceObserver((list) => take(list.getEntries()));
    obs.observe({ type: 'longtask', buffered: true });
    // the observer's callback comes in a task of its own, a while after the long task:
    // whoever reads the list first takes what is still waiting
    B.flush = () => take(obs.takeRecords());
  } catch (e) { B.longtaskError = String(e); B.flush = () => {}; }
  const SEL = '__ROW__';
  const mo = new MutationObserver(() => {
    if (B.rowsDom !== null || !document.querySelector(SEL)) return;
    B.rowsDom = performance.now();
    mo.disconnect();
    // the next frame; the task after it runs once that frame is painted
    requestAnimationFrame(() => {
      B.rowsRaf = performance.now();
      const ch = new MessageChannel();
      ch.port1.onmessage = () => { B.rowsPainted = performance.now(); };
      ch.port2.postMessage(0);
    });
  });
  mo.observe(document, { childList: true, subtree: true });
})();""".replace("__ROW__", ROW)

FIRST_ROWS_JS = "() => !!window.__kbench && window.__kbench.rowsPainted !== null"

LOAD_FIGURES_JS = """() => {
  const B = window.__kbench;
  const vms = performance.getEntriesByType('resource').filter((e) => {
    try { return new URL(e.name).pathname.replace(/\\/+$/, '') === '/vms'; }
    catch (err) { return false; }
  });
  return { rowsDom: B.rowsDom, rowsRaf: B.rowsRaf, rowsPainted: B.rowsPainted,
           longtaskError: B.longtaskError, now: performance.now(),
           vms: vms.map((e) => [e.startTime, e.responseEnd, e.transferSize || 0,
                                e.decodedBodySize || 0]) };
}"""

QUIET_JS = """() => {
  window.__kbench.flush();
  let end = 0;
  for (const [s, d] of window.__kbench.longtasks) end = Math.max(end, s + d);
  return [performance.now(), end];
}"""

LONGTASKS_JS = "() => { window.__kbench.flush(); return window.__kbench.longtasks; }"

NOW_JS = "() => performance.now()"

# The rows on screen (in list order), for the live load's targets.
VISIBLE_JS = """() => {
  const out = [];
  for (const li of document.querySelectorAll('__ROW__')) {
    const r = li.getBoundingClientRect();
    if (r.height > 0 && r.bottom > 0 && r.top < innerHeight) out.push(li.dataset.name);
    else if (out.length) break;
  }
  return out;
}""".replace("__ROW__", ROW)

# {name: state} -> {name: what the row shows} for the rows that do not show it yet
STALE_JS = """(want) => {
  const out = {};
  for (const [name, st] of Object.entries(want)) {
    const li = document.querySelector(`#vm-list li[data-name="${CSS.escape(name)}"]`);
    if (!li) { out[name] = '(no row)'; continue; }
    const chip = li.querySelector('.state');
    const text = (chip ? chip.textContent : li.dataset.state || '').trim().toLowerCase();
    if (!text.startsWith(st)) out[name] = text;
  }
  return out;
}"""

APPLIED_JS = f"(want) => Object.keys(({STALE_JS})(want)).length === 0"

# Armed before page.fill: on the filter's input event, check every animation frame whether
# #vm-list shows only rows matching the query; at the first that does, note the time after
# that frame's paint.
FILTER_ARM_JS = """(q) => {
  const B = window.__kbench;
  const F = B.filter = { q, input: null, shownRaf: null, painted: null, frames: 0, shown: 0 };
  const list = document.querySelector('#vm-list');
  const only = () => {
    let shown = 0;
    for (const li of list.querySelectorAll('li[data-name]')) {
      if (li.hidden || li.classList.contains('vm-pending')) continue;
      if (!li.dataset.name.toLowerCase().includes(q)) return 0;
      shown++;
    }
    return shown;
  };
  window.addEventListener('input', (e) => {
    if (F.input !== null || !e.target || e.target.id !== 'vm-filter') return;
    F.input = e.timeStamp;
    const frame = () => {
      F.frames++;
      const shown = only();
      if (!shown) { requestAnimationFrame(frame); return; }
      F.shown = shown;
      F.shownRaf = performance.now();
      const ch = new MessageChannel();
      ch.port1.onmessage = () => { F.painted = performance.now(); };
      ch.port2.postMessage(0);
    };
    requestAnimationFrame(frame);
  }, true);
}"""

FILTER_DONE_JS = "() => !!window.__kbench.filter && window.__kbench.filter.painted !== null"
FILTER_JS = "() => window.__kbench.filter"

# (f) Armed before choosing "State" in #vm-sort (the UIs that have one): from the change
# event, every animation frame, whether the rows on screen are in state order (running
# first); the time after the first such frame's paint.
SORT_ARM_JS = """() => {
  const B = window.__kbench;
  const S = B.sort = { change: null, painted: null, frames: 0, rows: 0 };
  const RANK = { running: 0, paused: 1, blocked: 2, pmsuspended: 3, shutdown: 4, crashed: 5,
    shutoff: 6, nostate: 7 };
  const list = document.querySelector('#vm-list');
  const inOrder = () => {
    const rows = [...list.querySelectorAll('li[data-name]:not(.vm-pending)')];
    for (let i = 1; i < rows.length; i++) {
      if ((RANK[rows[i - 1].dataset.state] ?? 9) > (RANK[rows[i].dataset.state] ?? 9)) return 0;
    }
    return rows.length;
  };
  window.addEventListener('change', (e) => {
    if (S.change !== null || !e.target || e.target.id !== 'vm-sort') return;
    S.change = e.timeStamp;
    const frame = () => {
      S.frames++;
      const rows = inOrder();
      if (!rows) { requestAnimationFrame(frame); return; }
      S.rows = rows;
      const ch = new MessageChannel();
      ch.port1.onmessage = () => { S.painted = performance.now(); };
      ch.port2.postMessage(0);
    };
    requestAnimationFrame(frame);
  }, true);
}"""
SORT_DONE_JS = "() => !!window.__kbench.sort && window.__kbench.sort.painted !== null"
SORT_JS = "() => window.__kbench.sort"
HAS_SORT_JS = "() => !!document.getElementById('vm-sort')"


def short_rev(rev: str) -> str:
    return subprocess.run(["git", "-C", str(common.ROOT), "rev-parse", "--short",
                           f"{rev}^{{commit}}"], capture_output=True, text=True,
                          check=True).stdout.strip()


class Busy(Exception):
    """The page's main thread did not get round to our question in time."""


def ask(page: Any, fn: str, arg: Any = None, timeout: float = 30.0) -> Any:
    """``fn(arg)``'s value in the page, waiting at most ``timeout`` s for its main thread.

    (``page.evaluate`` waits as long as the page is busy, which with the single-file UI
    and 10,000 VMs can be minutes; ``wait_for_function`` has a timeout.)"""
    try:
        h = page.wait_for_function(f"(arg) => ({{ v: ({fn})(arg) }})", arg=arg,
                                   timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise Busy(f"the page did not answer within {timeout:g} s") from None
    return h.json_value()["v"]


def long_tasks(page: Any, t0: float, t1: float) -> dict[str, float]:
    """Long tasks that started in [t0, t1) (page ms): longest, count, time in all."""
    tasks = [d for s, d in ask(page, LONGTASKS_JS) if t0 <= s < t1]
    return {"longest": max(tasks, default=0.0), "count": len(tasks), "total": sum(tasks)}


def settle(page: Any, since: float, quiet: float, cap: float) -> tuple[float, bool]:
    """Wait until no long task has run for ``quiet`` s (and ``quiet`` s after page time
    ``since``); returns (page time it settled at, whether it did within ``cap`` s)."""
    deadline = time.monotonic() + cap
    while True:
        try:
            now, end = ask(page, QUIET_JS, timeout=max(1.0, deadline - time.monotonic()))
        except Busy:
            return float("nan"), False
        if now - max(end, since) >= quiet * 1000:
            return max(end, since) + quiet * 1000, True
        if time.monotonic() > deadline:
            return now, False
        time.sleep(0.2)


class Producer:
    """Injects vm.state events into kimchid's stream with the bus's own emit script."""

    def __init__(self, rds: RedisProc) -> None:
        from kimchi import bus

        self.bus = bus
        self.r = rds.client()
        self.emit = self.r.register_script(bus.SCRIPTS["emit"].source)

    def send(self, data: dict[str, Any]) -> None:
        self.emit(keys=[STREAM], args=["vm.state", self.bus.now_iso(time.time()),
                                       json.dumps(data), 100_000, ""])


def live_load(page: Any, rds: RedisProc, n: int, vms: dict[str, dict[str, Any]],
              duration: float, rate: float, cap: float, quiet: float,
              settle_cap: float) -> dict[str, Any]:
    """(d): flip VMs between paused and running at ``rate``/s for ``duration`` s."""
    producer = Producer(rds)
    on_screen = ask(page, VISIBLE_JS)[:8]
    if "vm0000" not in on_screen:
        on_screen = ["vm0000"] + on_screen[:7]
    last: dict[str, str] = {}
    total = max(1, int(rate * duration))
    p0 = ask(page, NOW_JS)
    t0 = time.monotonic()
    for i in range(total):
        d = t0 + i / rate - time.monotonic()
        if d > 0:
            time.sleep(d)
        # even: the rows on screen in turn; odd: VMs spread over the whole list
        name = (on_screen[(i // 2) % len(on_screen)] if i % 2 == 0
                else f"vm{((i // 2) * 7919 + 11) % n:04d}")
        vm = vms[name]
        was = last.get(name, vm["state"])
        now = "running" if was == "paused" else "paused"
        last[name] = now
        # what kimchid's own vm.state carries (kimchid/model/vms.py _state_data)
        producer.send({"name": name, "uuid": vm["uuid"], "state": now, "previous": was})
    sent_s = time.monotonic() - t0
    want = {name: last[name] for name in on_screen if name in last}
    t_last = time.monotonic()
    out: dict[str, Any] = {"sent": total, "rate": total / max(sent_s, 1e-9),
                           "on_screen": on_screen, "applied": "yes", "stale": {},
                           "caught_up_ms": None, "live_capped": False}
    try:
        page.wait_for_function(APPLIED_JS, arg=want, polling=50, timeout=cap * 1000)
        out["caught_up_ms"] = (time.monotonic() - t_last) * 1000
    except PlaywrightTimeout:
        try:
            out["stale"] = ask(page, STALE_JS, want, timeout=10)
            out["applied"] = "no" if out["stale"] else "late"  # late: busy past the cap
        except Busy:
            out["applied"] = "busy"  # the page did not answer: still at work
        out["live_capped"] = True
    # the window: from the first event until the page has shown them and gone quiet
    until, settled = settle(page, ask(page, NOW_JS, timeout=10) if not out["live_capped"]
                            else p0 + sent_s * 1000, quiet, settle_cap)
    out["live_settled"] = settled
    if until != until:  # the page never answered again
        out["live_capped"] = True
        return out
    tasks = long_tasks(page, p0, until)
    return out | {f"live_{k}": v for k, v in tasks.items()}


def filter_one(page: Any, query: str, cap: float) -> dict[str, Any]:
    """(e): type one VM's name into the filter."""
    ask(page, FILTER_ARM_JS, query)
    page.fill("#vm-filter", query, timeout=cap * 1000)
    try:
        page.wait_for_function(FILTER_DONE_JS, polling=50, timeout=cap * 1000)
    except PlaywrightTimeout:
        return {"filter_ms": None, "filter_capped": True}
    f = ask(page, FILTER_JS)
    return {"filter_ms": f["painted"] - f["input"], "filter_shown": f["shown"],
            "filter_frames": f["frames"], "filter_capped": False}


def sort_by_state(page: Any, cap: float) -> dict[str, Any]:
    """(f): with the filter cleared, sort the whole list by state (the reference UI has no
    sort: "n/a")."""
    if not ask(page, HAS_SORT_JS):
        return {"sort_ms": None, "sort_missing": True}
    page.fill("#vm-filter", "", timeout=cap * 1000)
    page.wait_for_timeout(500)
    ask(page, SORT_ARM_JS)
    page.select_option("#vm-sort", "state", timeout=cap * 1000)
    try:
        page.wait_for_function(SORT_DONE_JS, polling=50, timeout=cap * 1000)
    except PlaywrightTimeout:
        return {"sort_ms": None, "sort_capped": True}
    f = ask(page, SORT_JS)
    return {"sort_ms": f["painted"] - f["change"], "sort_rows": f["rows"],
            "sort_frames": f["frames"], "sort_capped": False}


PlaywrightTimeout: type[Exception] = TimeoutError  # replaced by Playwright's in main()


def run_page(browser: Any, k: KimchidProc, rds: RedisProc, n: int,
             vms: dict[str, dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    r = k.session().post(k.url + "/login", json={"username": k.auth[0],
                                                  "password": k.auth[1]}, timeout=30)
    if r.status_code != 200 or "kimchi_session" not in r.cookies:
        raise RuntimeError(f"POST /login: {r.status_code} {r.text[:200]}")
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1,
                              ignore_https_errors=k.tls)  # kimchid's own certificate
    out: dict[str, Any] = {}
    problems: list[str] = []
    try:
        ctx.add_cookies([{"name": "kimchi_session", "url": k.url,
                          "value": r.cookies["kimchi_session"]}])
        ctx.add_init_script(INIT_JS)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        broken: list[str] = []  # the page's code failed to load or threw: it may never show rows

        def console(m: Any) -> None:
            if m.type == "error":
                where = (m.location or {}).get("url", "")
                problems.append(f"console: {m.text}{f' ({where})' if where else ''}")

        def response(resp: Any) -> None:
            if resp.status >= 400 and resp.request.resource_type in ("document", "script"):
                broken.append(f"{resp.status} for {resp.url}")

        def exception(e: Any) -> None:
            problems.append(f"exception: {e}")
            broken.append(f"exception: {e}")

        page.on("console", console)
        page.on("pageerror", exception)
        page.on("response", response)
        started = time.monotonic()
        page.goto(k.url + "/#/vms", wait_until="commit")
        while True:  # a second at a time: a page that broke is given up on after 15 s
            try:
                page.wait_for_function(FIRST_ROWS_JS, polling=100, timeout=1000)
                break
            except PlaywrightTimeout:
                waited = time.monotonic() - started
                if broken and waited > 15:
                    raise RuntimeError("no VM rows after 15 s and the page broke: "
                                       + "; ".join(broken[:3])) from None
                if waited > a.cap:
                    out["capped"] = True
                    try:
                        lt = long_tasks(page, 0, float("inf"))
                        out.update(load_longest=lt["longest"], load_total=lt["total"],
                                   load_count=lt["count"])
                    except Busy:
                        pass
                    return out
        f = ask(page, LOAD_FIGURES_JS)
        if f["longtaskError"]:
            log(f"no longtask entries in this Chromium: {f['longtaskError']}")
        painted = f["rowsPainted"]
        # the listing the rows came from: the last GET /vms answered before they existed
        ends = [e[1] for e in f["vms"] if 0 < e[1] <= f["rowsDom"]]
        out.update(capped=False, first_rows_ms=painted, first_rows_raf_ms=f["rowsRaf"],
                   first_rows_dom_ms=f["rowsDom"],
                   after_vms_ms=painted - max(ends) if ends else None,
                   vms_requests=len(f["vms"]),
                   vms_bytes=max((e[3] for e in f["vms"]), default=0))
        settled_at, settled = settle(page, painted, a.quiet, a.settle_cap)
        out["settled"] = settled
        try:
            lt = long_tasks(page, 0, settled_at if settled_at == settled_at else float("inf"))
            out.update(settled_ms=settled_at, load_longest=lt["longest"],
                       load_total=lt["total"], load_count=lt["count"])
            out.update(live_load(page, rds, n, vms, a.live, a.rate, a.cap, a.quiet,
                                 a.settle_cap))
            if out["live_capped"] or not out["live_settled"]:
                out.update(filter_ms=None, filter_skipped=True)  # still busy with the events
            else:
                out.update(filter_one(page, f"vm{max(0, n - 3):04d}", a.cap))
                out.update(sort_by_state(page, a.cap))
        except Busy as e:  # the page stopped answering: what was measured stands
            out["busy"] = str(e)
            log(f"gave up on the page: {e}")
    finally:
        out["problems"] = problems
        out["page_errors"] = len(problems)
        ctx.close()
    return out


def run_side(browser: Any, side: str, tree: Path, n: int, node: Path, wd: Path,
             a: argparse.Namespace) -> dict[str, Any]:
    rds = RedisProc(wd / "redis").start()
    k = None
    try:
        k = KimchidProc(wd / "kimchid", rds.url, workers=0, tree=tree, tls=not a.plain,
                        extra={"libvirt": {"uri": f"test://{node}"}}).start()
        s = k.session()
        served = s.get(k.url + "/", headers={"Accept": "text/html"}, timeout=30).content
        if served != (tree / "webui" / "index.html").read_bytes():
            raise RuntimeError(f"{side}: kimchid on {k.url} does not serve {tree}/webui")
        t = time.monotonic()
        listed: list[dict[str, Any]] = common.wait_for(
            lambda: (lambda v: v if len(v) >= n else None)(
                s.get(k.url + "/vms", timeout=60).json()),
            timeout=max(60.0, n / 50), interval=0.5, what=f"kimchid to list {n} VMs")
        log(f"{side} N={n}: kimchid lists {len(listed)} VMs "
            f"({time.monotonic() - t:.1f} s after it answered)")
        vms = {v["name"]: v for v in listed}
        return run_page(browser, k, rds, n, vms, a)
    finally:
        if k:
            k.stop()
        rds.stop()


def summary(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"error: {r['error']}"
    if r.get("capped"):
        return (f"first rows > cap; long tasks so far {r['load_count']}, longest "
                f"{r['load_longest']:.0f} ms; page errors {len(r['problems'])}")
    if "applied" not in r:
        return (f"first rows {r['first_rows_ms']:.0f} ms, then the page stopped answering "
                f"({r.get('busy')})")
    return (f"first rows {r['first_rows_ms']:.0f} ms ({_ms(r.get('after_vms_ms'))} after GET "
            f"/vms), load: longest task {r['load_longest']:.0f} ms, {r['load_count']} long "
            f"({r['load_total']:.0f} ms){'' if r['settled'] else ', never settled'}; live "
            f"{r['sent']} ev at {r['rate']:.0f}/s: longest {_ms(r.get('live_longest'))} ms, "
            f"{_ms(r.get('live_count'))} long ({_ms(r.get('live_total'))} ms), applied "
            f"{r['applied']}{' ' + json.dumps(r['stale']) if r['stale'] else ''}"
            f"{' (window cut at the cap)' if r['live_capped'] else ''}, caught up after "
            f"{_ms(r.get('caught_up_ms'))} ms; filter "
            f"{'skipped' if r.get('filter_skipped') else _ms(r.get('filter_ms'))} ms; "
            f"page errors {len(r['problems'])}")


def _ms(x: Any) -> str:
    return "-" if x is None or x != x else f"{x:.0f}"


def figure(runs: list[dict[str, Any]], key: str, cap_ms: float) -> str:
    """The median over the runs of one side, '> cap' when a run never got there; '>= x'
    for live-load figures whose window was cut at the cap (the page still busy)."""
    ok = [r for r in runs if not r.get("error")]
    if not ok:
        return "error"
    capped = [r for r in ok if r.get("capped")]
    if capped and key == "first_rows_ms":
        return f"> {cap_ms:,.0f}"
    if capped and not key.startswith("load_"):
        return "-"
    if key.startswith("filter") and any(r.get("filter_capped") for r in ok):
        return f"> {cap_ms:,.0f}"
    if key.startswith("filter") and any(r.get("filter_skipped") for r in ok):
        return "skipped (busy)"
    if key == "sort_ms" and any(r.get("sort_missing") for r in ok):
        return "n/a (no sort)"
    if key == "sort_ms" and any(r.get("sort_capped") for r in ok):
        return f"> {cap_ms:,.0f}"
    if key == "caught_up_ms" and any(r.get("live_capped") for r in ok):
        return f"> {cap_ms:,.0f}"
    vals = [r[key] for r in ok if r.get(key) is not None]
    if not vals:
        return "-"
    if isinstance(vals[0], str):
        return "/".join(sorted(set(vals)))
    m = median(vals)
    cut = key.startswith("live_") and any(r.get("live_capped") for r in ok)
    return (">= " if cut else "") + common.fmt(m) + (
        f" ({common.spread(vals)})" if len(vals) > 1 else "")


def main() -> int:
    global PlaywrightTimeout
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 VMs only, shorter phases")
    ap.add_argument("--plain", action="store_true",
                    help="plain HTTP (default: HTTPS and login, as kimchi.sh up serves)")
    ap.add_argument("--reference", default="b8864a0", help="the commit to compare with")
    ap.add_argument("--current", default=None, metavar="REV",
                    help="measure this commit's tree as the current side instead of the "
                         "working tree (e.g. the reference itself, for an A/A run)")
    ap.add_argument("--vms", default=None, help="comma-separated N (default 1000,10000)")
    ap.add_argument("--reps", type=int, default=1, help="page loads per side and N")
    ap.add_argument("--live", type=float, default=None, help="seconds of live load (10)")
    ap.add_argument("--rate", type=float, default=100.0, help="vm.state events per second")
    ap.add_argument("--cap", type=float, default=120.0,
                    help="seconds to wait for the first rows, the filter, the live events")
    a = ap.parse_args()
    ns = [int(x) for x in (a.vms or ("1000" if a.quick else "1000,10000")).split(",")]
    a.live = a.live or (3.0 if a.quick else 10.0)
    a.quiet = 1.0 if a.quick else 1.5  # s without a long task: settled
    a.settle_cap = 20.0 if a.quick else 60.0
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import TimeoutError as PwTimeout
    from playwright.sync_api import sync_playwright

    PlaywrightTimeout = PwTimeout
    common.header(f"the VMs page in Chromium with {', '.join(f'{n:,}' for n in ns)} VMs: "
                  f"current vs {a.reference}", a.quick)
    print(f"# {a.reps} page load(s) per side and N, sides interleaved; live load "
          f"{a.rate:g} vm.state/s for {a.live:g} s; caps {a.cap:g} s (first rows, filter, "
          f"live catch-up), settled = {a.quiet:g} s without a long task")
    wd = common.workdir("uivms")
    ref_tree = common.git_tree(a.reference, wd / "reference-tree")
    ref_sha = short_rev(a.reference)
    log(f"reference {a.reference} ({ref_sha}) extracted into {ref_tree}")
    trees = {"current": common.ROOT, "reference": ref_tree}
    current = "working tree"
    if a.current:
        trees["current"] = common.git_tree(a.current, wd / "current-tree")
        current = short_rev(a.current)
        log(f"current side: {a.current} ({current}) extracted into {trees['current']}")
    print(f"# current: {current} ({trees['current']}); reference: {ref_sha}")
    results: dict[int, dict[str, list[dict[str, Any]]]] = {
        n: {"current": [], "reference": []} for n in ns}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        print(f"# Chromium {browser.version}")
        sys.stdout.flush()
        try:
            turn = 0
            for rep in range(a.reps):
                for n in ns:
                    node = wd / f"node-{n}.xml"
                    if not node.exists():
                        node.write_text(node_xml(n))
                    sides = ["current", "reference"]
                    if turn % 2:
                        sides.reverse()
                    turn += 1
                    for side in sides:
                        t = time.monotonic()
                        try:
                            res = run_side(browser, side, trees[side], n, node,
                                           wd / f"{side}-{n}-{rep}", a)
                        except Exception as e:  # noqa: BLE001 - one side's failure is a figure
                            traceback.print_exc()
                            res = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                        results[n][side].append(res)
                        log(f"{side} N={n} rep {rep + 1} ({time.monotonic() - t:.0f} s): "
                            f"{summary(res)}")
                        for prob in res.get("problems", [])[:5]:
                            log(f"  page: {prob[:300]}")
        finally:
            browser.close()

    cap_ms = a.cap * 1000
    live = f"{a.rate:g} ev/s x {a.live:g} s"
    figures = [
        ("(a) navigation -> first rows painted, ms", "first_rows_ms", "-"),
        ("(b) GET /vms answered -> first rows painted, ms", "after_vms_ms",
         f"<= {TARGET_AFTER_VMS_MS:g}"),
        ("(c) first load: longest task, ms", "load_longest", "-"),
        ("(c) first load: long tasks, count", "load_count", "-"),
        ("(c) first load: long-task time, ms", "load_total", "-"),
        (f"(d) live {live}: longest task, ms", "live_longest",
         f"<= {TARGET_LIVE_TASK_MS:g}"),
        ("(d) live: long tasks (> 50 ms), count", "live_count", "0"),
        ("(d) live: long-task time, ms", "live_total", "-"),
        ("(d) live: rows on screen show the last state sent", "applied", "yes"),
        ("(d) live: ... that many ms after the last event", "caught_up_ms", "-"),
        ("page errors (console, exceptions)", "page_errors", "0"),
        ("(e) filter to one VM: input -> painted, ms", "filter_ms", "-"),
        ("(f) sort all by state: change -> painted, ms", "sort_ms", "-"),
    ]
    for n in ns:
        print(f"\n## {n:,} VMs")
        common.table([(label, figure(results[n]["current"], key, cap_ms),
                       figure(results[n]["reference"], key, cap_ms), target)
                      for label, key, target in figures],
                     ["figure", "current", f"reference {a.reference}", "target"])
    errors = sum(len(r.get("problems", [])) for n in ns for s in results[n].values() for r in s)
    if errors:
        print(f"# the pages logged {errors} console error(s)/exception(s) (see above)")

    judged = max(ns)
    cur = [r for r in results[judged]["current"] if not r.get("error")]

    def med(key: str) -> float:
        vals = [r[key] for r in cur if r.get(key) is not None]
        return median(vals) if vals else float("nan")

    after_vms, live_longest = med("after_vms_ms"), med("live_longest")
    applied = bool(cur) and all(r.get("applied") == "yes" for r in cur)
    ok = (bool(cur) and len(cur) == len(results[judged]["current"])
          and not any(r.get("capped") for r in cur)
          and after_vms <= TARGET_AFTER_VMS_MS and live_longest <= TARGET_LIVE_TASK_MS
          and applied)
    note = "" if judged >= 10000 else f" (only {judged:,} VMs measured: the target is at 10,000)"
    common.verdict(ok, f"current UI at {judged:,} VMs: GET /vms -> first rows "
                       f"{after_vms:.0f} ms (target <= {TARGET_AFTER_VMS_MS:g}); longest task "
                       f"under {live} {live_longest:.0f} ms (target <= "
                       f"{TARGET_LIVE_TASK_MS:g}), events applied: {'yes' if applied else 'no'}"
                       f"{note}")
    busy = common.footer()

    def brief(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in ("problems", "on_screen")} | {
            "page_errors": len(r.get("problems", []))}

    print("RESULT " + json.dumps({"machine_busy_pct": busy, "bench": "ui_vms",
                                  "reference": ref_sha, "current": current,
                                  "quick": a.quick, "vms": ns,
                                  "results": {str(n): {s: [brief(r) for r in rs]
                                                       for s, rs in results[n].items()}
                                              for n in ns},
                                  "pass": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
