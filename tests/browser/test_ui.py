"""The browser UI in a real Chromium, against the real daemon, workers and Redis.

Each test drives the page as a user would (type a folder, click Scan, watch the
task panel and the library) and asserts what the user sees, never the page's
internals. Screenshots go to ARTIFACTS (tests/conftest.py) for a human to look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser

TERMINAL = ("finished", "failed", "cancelled")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Records, in the page, every value the task progress bars take and every state of the
# connection indicator, so a test can tell what the user saw between two of its steps.
WATCH_PAGE = """() => {
  window.__progress = [];
  window.__conn = [document.getElementById('conn').dataset.state];
  window.__noReload = true;
  const bars = new MutationObserver((records) => {
    for (const r of records) {
      const nodes = r.type === 'attributes' ? [r.target] : [...r.addedNodes];
      for (const n of nodes) {
        if (!(n instanceof Element)) continue;
        const bar = n.matches('.bar') ? n : n.querySelector('.bar');
        if (bar) window.__progress.push(bar.dataset.value);
      }
    }
  });
  bars.observe(document.getElementById('task-list'),
               { subtree: true, childList: true, attributes: true, attributeFilter: ['data-value'] });
  const conn = document.getElementById('conn');
  new MutationObserver(() => window.__conn.push(conn.dataset.state))
    .observe(conn, { attributes: true, attributeFilter: ['data-state'] });
}"""

MID_PROGRESS = """() => {
  const b = document.querySelector('#task-list .task .bar');
  const v = b ? b.dataset.value : '';
  return v !== '' && v !== undefined && Number(v) > 0 && Number(v) < 100;
}"""


def open_ui(page: Any, kimchi: Kimchi) -> None:
    page.goto(kimchi.url + "/")
    page.wait_for_selector('#conn[data-state="live"]')
    page.evaluate(WATCH_PAGE)


def start_scan(page: Any, path: Path | str) -> None:
    page.get_by_label("Folder to scan").fill(str(path))
    page.get_by_role("button", name="Scan", exact=True).click()


def task_card(page: Any) -> Any:
    """The one task card on the page (each test runs a single task)."""
    cards = page.locator("#task-list > li.task")
    cards.first.wait_for()
    return cards


def wait_status(page: Any, statuses: tuple[str, ...], timeout: float = 30_000) -> str:
    sel = ", ".join(f'#task-list > li.task[data-status="{s}"]' for s in statuses)
    page.wait_for_selector(sel, timeout=timeout)
    return page.locator("#task-list > li.task").first.get_attribute("data-status")


def iso_rows(page: Any) -> dict[str, str]:
    """Library rows as {name: distribution text}."""
    cells = page.eval_on_selector_all(
        "#iso-rows tr", "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText])")
    return {" ".join(name.split()): " ".join(distro.split()) for name, distro in cells}


def wait_rows(page: Any, op: str, n: int, timeout: float = 15_000) -> None:
    """Wait until the library shows ``op n`` rows (op: '===' or '>')."""
    js = {"===": "n => document.querySelectorAll('#iso-rows tr').length === n",
          ">": "n => document.querySelectorAll('#iso-rows tr').length > n"}[op]
    page.wait_for_function(js, arg=n, timeout=timeout)


def row_paths(page: Any) -> list[str]:
    return page.eval_on_selector_all("#iso-rows tr", "rs => rs.map(r => r.dataset.path)")


def make_slow_tree(root: Path, isos: int = 15, empty_dirs: int = 20) -> Path:
    """``isos`` ISOs, each in its own folder next to ``empty_dirs`` empty ones.

    The worker reports a percentage once it knows of more than 50 folders and only every
    64 folders walked; spreading the ISOs evenly over the folders keeps the bar moving
    through the scan whatever order the directory listing comes in.
    """
    volumes = ["Fedora-WS-Live-39-1-5", "Ubuntu 22.04.3 LTS amd64", "Debian 12.2.0 amd64 n",
               "MY_OWN_DISC"]
    for i in range(isos):
        folder = root / f"set{i:02d}"
        make_iso(folder / f"image-{i:02d}.iso", volumes[i % len(volumes)],
                 size=(i + 1) * 350 * 1024 * 1024)
        for j in range(empty_dirs):
            (folder / f"empty{j:02d}").mkdir()
    return root


@pytest.fixture
def slow_kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    """A daemon whose workers wait 0.3 s on each ISO they find: scans that last."""
    return kimchi_factory(redis_url=redis_db.url, env={"KIMCHI_FAULT_SLOW_REPORTS": "0.3"})



@pytest.fixture
def slow_tree(tmp_path: Path) -> Path:
    return make_slow_tree(tmp_path / "slow-isos")


@pytest.fixture
def short_slow_tree(tmp_path: Path) -> Path:
    """Fewer ISOs: the scan is run twice (before and after the restart)."""
    return make_slow_tree(tmp_path / "slow-isos", isos=8)


# -- the tests ------------------------------------------------------------------------------


def test_scan_shows_live_progress_and_adds_isos_without_reload(
        page: Any, kimchi: Kimchi, iso_tree: Path, artifacts: Path) -> None:
    open_ui(page, kimchi)
    assert page.get_by_role("heading", name="ISO library").is_visible()
    assert page.locator("#iso-count").inner_text() == "0 images"
    assert page.locator("#conn").inner_text().strip() == "Live"

    start_scan(page, iso_tree)

    card = task_card(page)
    assert card.count() == 1
    assert card.locator(".task-kind").inner_text() == "ISO scan"
    assert card.locator(".task-target").inner_text() == str(iso_tree)
    assert wait_status(page, TERMINAL) == "finished"
    assert card.locator(".task-status").inner_text() == "Finished"
    assert card.locator(".task-cancel").is_hidden()
    counters = card.locator(".task-counters").inner_text()
    assert re.search(r"ISOs\s+4", counters) and re.search(r"Skipped\s+2", counters), counters

    # The bar moved: it started indeterminate (no percentage yet) and ended full.
    seen = page.evaluate("window.__progress")
    assert seen and seen[0] == "" and seen[-1] == "100", seen
    assert card.locator("progress").get_attribute("value") == "100"

    wait_rows(page, "===", 4)
    assert iso_rows(page) == {
        "Fedora-39.iso": "fedora 39",
        "ubuntu-22.04.iso": "ubuntu 22.04",
        "debian-12.iso": "debian 12.2",
        "UNKNOWN.ISO": "unknown",
    }
    assert page.locator("#iso-count").inner_text() == "4 images"
    unknown = page.locator('#iso-rows tr', has_text="UNKNOWN.ISO")
    assert unknown.locator("td").nth(3).inner_text() == "No"
    assert unknown.locator("td").nth(5).inner_text() == "scan"
    assert page.evaluate("window.__noReload") is True  # no reload happened
    page.screenshot(path=str(artifacts / "ui-scan-finished.png"))


def test_library_lists_sorts_and_filters(page: Any, kimchi: Kimchi, tmp_path: Path,
                                         artifacts: Path) -> None:
    gib, mib = 1024**3, 1024**2
    tree = tmp_path / "library"
    make_iso(tree / "Fedora-39.iso", "Fedora-WS-Live-39-1-5", size=2 * gib)
    make_iso(tree / "ubuntu-22.04.iso", "Ubuntu 22.04.3 LTS amd64", size=700 * mib)
    make_iso(tree / "debian-12.iso", "Debian 12.2.0 amd64 n", size=int(4.7 * gib) // 2048 * 2048)
    make_iso(tree / "UNKNOWN.ISO", "MY_OWN_DISC", bootable=False)
    task = kimchi.post("/isos/scan", {"path": str(tree)}).json()
    assert kimchi.wait_task(task["id"])["status"] == "finished"

    open_ui(page, kimchi)  # the library and the task come from the listings this time
    wait_rows(page, "===", 4)
    assert wait_status(page, TERMINAL) == "finished"

    def names() -> list[str]:
        return list(iso_rows(page))  # in the displayed order

    def sizes() -> list[str]:
        return page.locator("#iso-rows td.num").all_inner_texts()

    assert names() == ["debian-12.iso", "Fedora-39.iso", "ubuntu-22.04.iso", "UNKNOWN.ISO"]
    name = page.locator('#iso-table th[data-key="name"]')
    assert name.get_attribute("aria-sort") == "ascending"

    size = page.locator('#iso-table th[data-key="size"]')
    size.get_by_role("button").click()
    assert size.get_attribute("aria-sort") == "ascending"
    assert name.get_attribute("aria-sort") == "none"
    assert sizes() == ["48 KiB", "700 MiB", "2.0 GiB", "4.7 GiB"]
    size.get_by_role("button").click()
    assert size.get_attribute("aria-sort") == "descending"
    assert sizes() == ["4.7 GiB", "2.0 GiB", "700 MiB", "48 KiB"]

    distro = page.locator('#iso-table th[data-key="distro"]').get_by_role("button")
    distro.focus()
    page.keyboard.press("Enter")  # keyboard users sort too
    assert list(iso_rows(page).values()) == ["debian 12.2", "fedora 39", "ubuntu 22.04",
                                             "unknown"]

    page.get_by_label("Filter").fill("ubuntu")
    wait_rows(page, "===", 1)
    assert names() == ["ubuntu-22.04.iso"]
    assert page.locator("#iso-count").inner_text() == "1 of 4 images"
    page.get_by_label("Filter").fill("no such image")
    page.wait_for_selector("#iso-empty:not([hidden])")
    assert "No image matches" in page.locator("#iso-empty").inner_text()
    page.get_by_label("Filter").fill("")
    wait_rows(page, "===", 4)

    # every section has its page now: no "coming soon" placeholder is left
    assert page.locator(".nav-soon").count() == 0
    assert page.locator(".nav-list a.nav-item").all_inner_texts()[:9] == [
        "ISO library", "Templates", "Virtual machines\n1", "Storage", "Networks", "Host",
        "Hosts", "Debug reports", "API tokens"]

    # a narrow window: one column, nothing wider than the window but the table's own scroller
    page.set_viewport_size({"width": 400, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for part in ("#scan-form", "#iso-table", "#tasks", "#conn"):
        page.locator(part).scroll_into_view_if_needed()
        assert page.locator(part).is_visible()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "ui-narrow.png"), full_page=True)


def test_mid_scan_screenshot_then_stop_cancels_the_scan(
        page: Any, slow_kimchi: Kimchi, slow_tree: Path, artifacts: Path) -> None:
    open_ui(page, slow_kimchi)
    start_scan(page, slow_tree)
    card = task_card(page)
    stop = page.get_by_role("button", name=re.compile(r"^Stop"))
    stop.wait_for()

    page.wait_for_function(MID_PROGRESS, timeout=20_000)
    page.wait_for_timeout(350)  # let the bar's short transition finish
    shot = artifacts / "ui-mid-scan.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot))
    assert shot.exists() and shot.read_bytes()[:8] == PNG_SIGNATURE
    assert card.get_attribute("data-status") == "running"
    found_mid_scan = page.locator("#iso-rows tr").count()
    assert 0 < found_mid_scan < 15  # the library fills while the scan runs

    stop.click()
    assert wait_status(page, TERMINAL) == "cancelled"
    assert card.locator(".task-status").inner_text() == "Cancelled"
    assert stop.is_hidden() and card.locator(".task-cancel").is_hidden()
    assert "cancelled" in page.locator("#scan-status").inner_text()
    task_id = card.get_attribute("data-task-id")
    assert slow_kimchi.get(f"/tasks/{task_id}").json()["status"] == "cancelled"
    assert page.locator("#iso-rows tr").count() < 15
    page.screenshot(path=str(artifacts / "ui-cancelled.png"))


def test_relative_path_shows_the_reason_inline(page: Any, idle_kimchi: Kimchi, problems: Any,
                                               artifacts: Path) -> None:
    kimchi = idle_kimchi
    problems.allowed.append("status of 400")  # Chromium logs the failed POST itself
    open_ui(page, kimchi)
    start_scan(page, "isos/of/mine")

    error = page.locator("#scan-error")
    error.wait_for()
    expected = kimchi.post("/isos/scan", {"path": "isos/of/mine"}).json()
    assert expected["errcode"] == "KCHISO0001E"
    assert error.inner_text() == expected["reason"]
    assert "KCHISO0001E" in error.inner_text()
    assert error.get_attribute("role") == "alert"
    assert page.get_by_label("Folder to scan").get_attribute("aria-invalid") == "true"
    assert page.locator("#task-list > li").count() == 0
    page.screenshot(path=str(artifacts / "ui-bad-path.png"))

    page.get_by_label("Folder to scan").fill("/")  # editing clears the message
    assert error.is_hidden()


def test_reconnects_after_a_daemon_restart_without_duplicates(
        page: Any, slow_kimchi: Kimchi, short_slow_tree: Path, problems: Any,
        artifacts: Path) -> None:
    # While the daemon is down Chromium logs the refused connections itself.
    problems.allowed += ["WebSocket connection", "ERR_CONNECTION_REFUSED",
                         "Failed to load resource"]
    open_ui(page, slow_kimchi)
    start_scan(page, short_slow_tree)
    card = task_card(page)
    task_id = card.get_attribute("data-task-id")
    wait_rows(page, ">", 0, timeout=20_000)
    assert card.get_attribute("data-status") == "running"

    slow_kimchi.restart()  # closes every WebSocket; the scan is handed to the new workers

    page.wait_for_selector('#conn[data-state="live"]', timeout=20_000)
    states = page.evaluate("window.__conn")
    assert "reconnecting" in states, states
    assert states[-1] == "live"

    status = wait_status(page, TERMINAL, timeout=45_000)
    rest = slow_kimchi.get(f"/tasks/{task_id}").json()
    assert status == rest["status"]
    assert page.locator("#task-list > li.task").count() == 1
    assert card.get_attribute("data-task-id") == task_id

    library = sorted(i["path"] for i in slow_kimchi.get("/isos").json())
    wait_rows(page, "===", len(library))
    paths = row_paths(page)
    assert len(paths) == len(set(paths)), "an ISO is shown twice"
    assert sorted(paths) == library
    if status == "finished":
        assert len(library) == 8
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(artifacts / "ui-after-reconnect.png"))



def test_reset_frame_lists_again_and_old_events_are_not_applied_twice(
        page: Any, kimchi: Kimchi, iso_tree: Path) -> None:
    # The socket goes through Playwright, which can hold frames back and inject others:
    # the UI misses a whole scan, is told to list again, then gets the missed frames late.
    sockets: list[Any] = []
    held: list[str] = []
    hold = {"on": False}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)
        server.on_message(lambda m: held.append(m) if hold["on"] else ws.send(m))
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/events"), route)
    open_ui(page, kimchi)
    hold["on"] = True
    task = kimchi.post("/isos/scan", {"path": str(iso_tree)}).json()
    assert kimchi.wait_task(task["id"])["status"] == "finished"
    page.wait_for_timeout(500)  # let Playwright take (and hold) the frames
    assert held, "the scan's events never reached the socket"
    assert page.locator("#iso-rows tr").count() == 0
    assert page.locator("#task-list > li").count() == 0

    hold["on"] = False
    sockets[-1].send('{"type":"reset"}')
    wait_rows(page, "===", 4)
    assert wait_status(page, TERMINAL) == "finished"

    for frame in held:  # every one of them is older than the new listing
        sockets[-1].send(frame)
    page.wait_for_timeout(300)
    assert page.locator("#task-list > li.task").count() == 1
    assert page.locator("#task-list > li.task").first.get_attribute("data-status") == "finished"
    paths = row_paths(page)
    assert len(paths) == 4 and len(set(paths)) == 4


def test_degraded_banner_while_redis_is_down(
        page: Any, idle_kimchi: Kimchi, redis_db: RedisServer, artifacts: Path,
        problems: Any) -> None:
    # the banner reads GET /health, which answers 503 while Redis is away: Chromium logs it
    problems.allowed.append("status of 503")
    open_ui(page, idle_kimchi)
    banner = page.get_by_role("alert").filter(has_text="degraded")
    assert page.locator("#banner").is_hidden()

    redis_db.stop()
    try:
        page.wait_for_selector("#banner:not([hidden])", timeout=20_000)
        assert page.locator("#conn").inner_text().strip() == "Degraded"
        assert banner.count() == 1  # one alert, saying kimchi is degraded
        problem = page.locator('#banner-problems > li[data-problem="redis"]')
        assert "Redis, the message bus" in problem.inner_text()
        assert "reconnects by itself" in problem.locator(".banner-fix").inner_text()
        page.screenshot(path=str(artifacts / "ui-degraded.png"))
    finally:
        redis_db.start()
    page.wait_for_selector("#banner", state="hidden", timeout=30_000)
    page.wait_for_selector('#conn[data-state="live"]')
