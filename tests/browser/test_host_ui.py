"""The host page in a real Chromium: what the machine is, and charts that move live."""

from __future__ import annotations

import platform
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.cluster import Cluster, add_host, cluster3  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, RedisServer, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture
def host_kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0,
                          extra={"host": {"stats_interval": 0.5, "history": 20}})


@pytest.fixture
def cluster_kimchi(kimchi_factory: Any, redis_db: RedisServer,
                   cluster3: Cluster) -> Kimchi:  # noqa: F811
    """kimchid whose local host is the simulated h1 (tests/cluster.py), h2 added, every
    host's figures sampled every 0.5 s."""
    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"libvirt": {"uri": cluster3["h1"].uri},
                              "host": {"stats_interval": 0.5, "history": 20}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    add_host(k, cluster3, "h2")
    return k


def size_text(n: float) -> str:
    """A size as the page says it (webui/js/core/dom.js humanSize): "3.0 GiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.{1 if n < 10 else 0}f} {units[i]}"


def record_texts(page: Any) -> None:
    """From now on, keep every text the memory total and the disk read rate show."""
    page.evaluate(
        "() => { window.seen = { mem: [], disk: [] };"
        " const keep = (id, into) => { const e = document.getElementById(id);"
        "   into.push(e.textContent);"
        "   new MutationObserver(() => into.push(e.textContent))"
        "     .observe(e, { childList: true, characterData: true, subtree: true }); };"
        " keep('now-mem-of', window.seen.mem); keep('now-disk-read', window.seen.disk); }")


def samples_shown(page: Any) -> int:
    return int(page.locator("#host-charts").get_attribute("data-samples") or 0)


def wait_samples(page: Any, more: int, after: int) -> None:
    """Until the charts hold ``more`` samples more than ``after`` (or their window is full)."""
    page.wait_for_function(
        "([n, cap]) => { const c = document.querySelector('#host-charts');"
        " return Number(c.dataset.samples || 0) >= Math.min(n, cap); }",
        arg=[after + more, 20], timeout=10_000)


def info(page: Any) -> dict[str, str]:
    # one evaluation (eval_on_selector_all is two: the page may render the list again
    # between them, leaving the dt it found detached, without its dd)
    pairs = page.evaluate(
        "() => [...document.querySelectorAll('#host-info dt')]"
        ".map(d => [d.textContent, d.nextElementSibling.textContent])")
    return dict(pairs)


def test_the_host_page_describes_the_machine_and_moves_live(
        page: Any, host_kimchi: Kimchi, artifacts: Path) -> None:
    k = host_kimchi
    page.goto(k.url + "/#/host")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector("#host-info dt")
    assert page.locator("#host-sub").inner_text().startswith(socket.gethostname() + " · up ")
    shown = info(page)
    assert platform.release() in shown["Kernel"]
    assert shown["CPUs"].startswith(f"{psutil.cpu_count()} online")
    assert shown["Processor"].startswith(k.get("/host").json()["cpu_model"])
    assert shown["libvirt"].count(".") == 2
    assert page.locator("#nav-host").get_attribute("aria-current") == "page"

    # the CPU chart draws a line, and the line moves with each host.stats notice
    line = page.locator("#chart-cpu polyline")
    line.wait_for()
    before = line.get_attribute("points")
    page.wait_for_function(
        "p => { const l = document.querySelector('#chart-cpu polyline');"
        " return !!l && l.getAttribute('points') !== p; }", arg=before, timeout=5_000)
    assert page.locator("#now-cpu").inner_text().endswith(" %")
    mem = page.locator("#now-mem-of").inner_text()
    assert mem.startswith("in use of ") and "GiB" in mem
    for chart in ("#chart-mem", "#chart-disk", "#chart-net"):
        assert page.locator(f"{chart} polyline").count() >= 1, chart
    assert "a sample every 0.5 s" in page.locator("#host-window").inner_text()
    page.screenshot(path=str(artifacts / "ui-host.png"))


def test_with_several_hosts_the_host_page_shows_the_chosen_hosts_figures_only(
        page: Any, cluster_kimchi: Kimchi, cluster3: Cluster,  # noqa: F811
        artifacts: Path) -> None:
    k = cluster_kimchi
    # both hosts are sampled, with other memory totals: h2's (the test driver's) would show
    wait_for(lambda: len(k.get("/hosts/h2/stats/history").json()["time"]) >= 2,
             what="h2's history")
    local_total = k.get("/host/stats").json()["memory"]["total"]
    h2 = k.get("/hosts/h2/stats").json()
    assert size_text(local_total) != size_text(h2["memory"]["total"])

    page.goto(k.url + "/#/host")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector("#host-info dt")
    pick = page.locator("#host").get_by_label("Host", exact=True)
    pick.wait_for()
    assert pick.locator("option").all_inner_texts() == ["local", "h2"]
    assert pick.input_value() == "local"
    page.wait_for_selector('#host-charts[data-host="local"] #chart-disk polyline', state="attached")
    assert page.locator("#host-info-title").inner_text() == "This machine"
    assert "Kernel" in info(page)

    # the local charts take the local host's notices only, though h2's come as often
    record_texts(page)
    wait_samples(page, 6, samples_shown(page))
    seen = page.evaluate("() => window.seen")
    assert set(seen["mem"]) == {f"in use of {size_text(local_total)}"}
    assert "—" not in seen["disk"]  # h2's samples tell no disk rates

    # h2 chosen: what kimchi knows of it, its memory chart; no disk or network chart
    pick.select_option("h2")
    page.wait_for_selector('#host-charts[data-host="h2"] #chart-mem polyline', state="attached")
    assert page.locator("#host-info-title").inner_text() == "Host h2"
    shown = info(page)
    assert shown["libvirt URI"] == cluster3["h2"].uri
    assert shown["State"] == "Connected"
    assert shown["CPUs"] == str(cluster3["h2"].keep.getInfo()[2])
    assert shown["Virtual machines"] == "1 running of 1"
    assert "Kernel" not in shown  # GET /host is this machine's only
    assert page.locator("#host-sub").inner_text().startswith("h2 · connected")
    assert page.locator("#now-mem-of").inner_text() == f"in use of {size_text(h2['memory']['total'])}"
    for card, what in (("disk", "disk reads and writes"), ("net", "network traffic")):
        assert page.locator(f"#chart-{card}").is_hidden()
        assert page.locator(f"#chart-{card}-now").is_hidden()
        assert page.locator(f"#chart-{card}-none").inner_text().startswith(
            f"libvirt does not report the {what} of h2")
    # its CPU use is not told (the test driver's CPU times never move): a gap, not 0 %
    assert page.locator("#now-cpu").inner_text() == "—"
    assert page.locator("#chart-cpu polyline").count() == 0
    assert page.locator("#chart-cpu-none").is_visible()
    page.screenshot(path=str(artifacts / "ui-host-other.png"))

    # ...and h2's notices only: never the local host's
    record_texts(page)
    wait_samples(page, 4, samples_shown(page))
    seen = page.evaluate("() => window.seen")
    assert set(seen["mem"]) == {f"in use of {size_text(h2['memory']['total'])}"}
    assert set(seen["disk"]) == {"—"}

    # back to the local host: its own history again, every chart
    pick.select_option("local")
    page.wait_for_selector('#host-charts[data-host="local"] #chart-disk polyline', state="attached")
    assert page.locator("#chart-disk-none").is_hidden()
    assert page.locator("#now-cpu").inner_text().endswith(" %")
    assert page.locator("#now-mem-of").inner_text() == f"in use of {size_text(local_total)}"
    assert page.locator("#host-info-title").inner_text() == "This machine"
    assert samples_shown(page) >= len(k.get("/host/stats/history").json()["time"]) - 1
