"""The host page in a real Chromium: what the machine is, and charts that move live."""

from __future__ import annotations

import platform
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Kimchi, RedisServer

pytestmark = pytest.mark.browser


@pytest.fixture
def host_kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0,
                          extra={"host": {"stats_interval": 0.5, "history": 20}})


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
