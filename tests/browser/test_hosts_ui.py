"""The Hosts page, and the VMs of several hosts, in a real Chromium against a simulated
cluster (tests/cluster.py: h1..h3, each a libvirtd of its own serving the test driver).

The local host is h1 (``[libvirt] uri``, named ``local`` by kimchi, as in
tests/integration/test_hosts.py); h2 and h3 are added through the page's form or the API.
Each test drives the page as an admin would and checks with the API (or libvirt itself)
that the server agrees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, add_host, cluster3, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi

pytestmark = pytest.mark.browser

NOWHERE = "test+unix:///default?socket=/nowhere/libvirt-sock"
UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@pytest.fixture
def sampled(kimchi_factory: Any, redis_db: Any, cluster3: Cluster) -> Kimchi:  # noqa: F811
    """As ``multi`` (the local host is h1), each host's figures sampled every 0.5 s."""
    from tests.conftest import wait_for

    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"libvirt": {"uri": cluster3["h1"].uri},
                              "host": {"stats_interval": 0.5, "history": 20}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    return k


def in_use_text(memory: dict[str, int]) -> str:
    """Memory in use as a host's row says it: "3.1 of 15.6 GiB", in the total's unit."""
    total, used = memory["total"], memory["total"] - memory["avail"]
    i = 0
    while total >= 1024 ** (i + 1) and i < len(UNITS) - 1:
        i += 1
    digits = 1 if i else 0
    return f"{used / 1024 ** i:.{digits}f} of {total / 1024 ** i:.{digits}f} {UNITS[i]}"


def open_page(page: Any, k: Kimchi, where: str) -> None:
    page.goto(f"{k.url}/#/{where}")
    page.wait_for_selector("#conn:not([data-state='connecting'])")
    page.wait_for_selector(f"#{where}:not([hidden])")


def row(page: Any, name: str) -> Any:
    return page.locator(f'#host-rows > tr[data-name="{name}"]')


def cells(page: Any, name: str) -> list[str]:
    return row(page, name).locator("td").all_inner_texts()


def in_use(page: Any, name: str) -> tuple[str, str]:
    """What a host's row says of its CPU use and its memory in use now."""
    r = row(page, name)
    return r.locator(".host-cpu-use").inner_text(), r.locator(".host-mem-use").inner_text()


def wait_state(page: Any, name: str, state: str, timeout: float = 30_000) -> None:
    page.wait_for_selector(f'#host-rows > tr[data-name="{name}"][data-state="{state}"]',
                           timeout=timeout)


def vm_item(page: Any, name: str, host: str = "") -> Any:
    """The row of VM ``name`` (of ``host``: rows say their host with several hosts)."""
    on = f'[data-host="{host}"]' if host else ""
    return page.locator(f'#vm-list > li[data-name="{name}"]{on}')


def shown_vms(page: Any) -> list[tuple[str, str]]:
    return [tuple(x) for x in page.eval_on_selector_all(
        "#vm-list > li.vm[data-name]", "els => els.map(e => [e.dataset.host || '', e.dataset.name])")]


def test_an_admin_adds_a_host_is_told_why_one_is_refused_and_removes_it(
        page: Any, problems: Any, multi: Kimchi, cluster3: Cluster,  # noqa: F811
        artifacts: Path) -> None:
    problems.allowed.append("status of 400")  # the refused POSTs: Chromium logs them itself
    k = multi
    open_page(page, k, "hosts")
    assert page.locator("#nav-hosts").get_attribute("aria-current") == "page"
    row(page, "local").wait_for()
    assert page.locator("#host-rows > tr").count() == 1
    assert row(page, "local").get_by_role("button").count() == 0  # never removed
    assert "this host" in cells(page, "local")[0]

    # h2 through the form: listed connected, with its CPUs, memory and VMs
    page.get_by_label("Host name", exact=True).fill("h2")
    page.get_by_label("libvirt URI").fill(cluster3["h2"].uri)
    page.get_by_role("button", name="Add host").click()
    wait_state(page, "h2", "connected")
    expected_cpus = cluster3["h2"].keep.getInfo()[2]
    page.wait_for_function(
        "n => { const r = document.querySelector('#host-rows > tr[data-name=\"h2\"]');"
        " return !!r && r.querySelector('.host-cpus').textContent === String(n); }",
        arg=expected_cpus)
    name, state, cpus, memory, vms, workers, _ = cells(page, "h2")
    assert name.split() == ["h2", cluster3["h2"].uri] and state.strip() == "Connected"
    assert cpus.splitlines()[0] == str(expected_cpus)
    assert memory.splitlines()[0].endswith("iB")
    assert workers == "0"  # every worker serves the local host, for now
    # the test driver's own "test" VM, running (counted once h2's VMs are read)
    page.wait_for_function(
        "() => document.querySelector('#host-rows > tr[data-name=\"h2\"]')"
        ".cells[4].textContent === '1 of 1'")
    assert page.locator("#host-name").input_value() == ""
    assert page.locator("#host-error").is_hidden()
    assert [h["name"] for h in k.get("/hosts").json()] == ["local", "h2"]
    assert page.locator("#host-count").inner_text() == "2 hosts"

    # a URI that is none: the server's words, next to the form; nothing added
    page.get_by_label("Host name", exact=True).fill("h9")
    page.get_by_label("libvirt URI").fill("not a uri")
    page.get_by_role("button", name="Add host").click()
    error = page.locator("#host-error")
    error.wait_for()
    assert "KCHAPI0006E" in error.inner_text() and "uri" in error.inner_text()
    assert page.locator("#host-uri").get_attribute("aria-invalid") == "true"
    # a host that cannot be reached: libvirt's reason; the form keeps what was typed
    page.get_by_label("libvirt URI").fill(NOWHERE)
    assert error.is_hidden()  # typing again clears it
    page.get_by_role("button", name="Add host").click()
    error.wait_for()
    text = error.inner_text()
    assert "Cannot reach host h9" in text and "/nowhere/" in text and "KCHHOST0004E" in text
    assert page.locator("#host-uri").input_value() == NOWHERE
    # a name taken
    page.get_by_label("Host name", exact=True).fill("h2")
    page.get_by_label("libvirt URI").fill(cluster3["h3"].uri)
    page.get_by_role("button", name="Add host").click()
    page.wait_for_function(
        "() => document.querySelector('#host-error').textContent.includes('KCHHOST0002E')")
    assert page.locator("#host-name").get_attribute("aria-invalid") == "true"
    assert page.locator("#host-rows > tr").count() == 2
    assert [h["name"] for h in k.get("/hosts").json()] == ["local", "h2"]
    page.screenshot(path=str(artifacts / "ui-hosts-refused.png"))

    # h3 added elsewhere (the API): it shows up by itself
    add_host(k, cluster3, "h3")
    wait_state(page, "h3", "connected")
    assert page.locator("#host-rows > tr").evaluate_all(
        "rows => rows.map(r => r.dataset.name)") == ["local", "h2", "h3"]

    # removing h2: asked first (its VMs keep running), then gone from the list and the server
    row(page, "h2").get_by_role("button", name="Remove host h2").click()
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for()
    assert page.locator("#confirm-title").inner_text() == "Remove host?"
    assert "keep running" in page.locator("#confirm-text").inner_text()
    page.locator("#confirm-cancel").click()  # changed one's mind: still there
    page.wait_for_selector("#confirm-dialog:not([open])", state="attached")
    assert row(page, "h2").count() == 1
    row(page, "h2").get_by_role("button", name="Remove host h2").click()
    page.locator("#confirm-ok").click()
    row(page, "h2").wait_for(state="detached")
    assert [h["name"] for h in k.get("/hosts").json()] == ["local", "h3"]
    assert cluster3["h2"].keep.lookupByName("test").isActive()  # kept running
    assert page.locator("#host-count").inner_text() == "2 hosts"


def test_an_unreachable_host_is_said_on_the_hosts_and_vms_pages_until_it_is_back(
        page: Any, multi: Kimchi, cluster3: Cluster, artifacts: Path) -> None:  # noqa: F811
    k = multi
    cluster3["h3"].define_vm("app3", running=True)
    add_host(k, cluster3, "h3")
    open_page(page, k, "hosts")
    wait_state(page, "h3", "connected")
    assert page.locator("#hosts-down").is_hidden()
    assert page.locator("#nav-hosts-down").is_hidden()

    cluster3["h3"].kill()
    wait_state(page, "h3", "unreachable")
    reason = row(page, "h3").locator(".host-reason")
    reason.wait_for()
    assert reason.inner_text()  # libvirt's reason
    assert cells(page, "h3")[4] == "—"  # its VMs are not known meanwhile
    notice = page.locator("#hosts-down")
    notice.wait_for()
    assert notice.get_attribute("role") == "status"
    assert notice.inner_text().startswith("Host h3 is unreachable: ")
    assert page.locator("#nav-hosts-down").inner_text().startswith("1")
    assert "1 unreachable" in page.locator("#host-count").inner_text()
    page.screenshot(path=str(artifacts / "ui-hosts-unreachable.png"))

    # the VMs page says so too, and lists the other hosts' VMs only
    page.locator("#nav-vms").click()
    page.wait_for_selector("#vms:not([hidden])")
    banner = page.locator("#vm-hosts-down")
    banner.wait_for()
    text = banner.inner_text()
    assert text.startswith("Host h3 is unreachable: ")
    assert text.endswith("Its VMs are not listed until it comes back.")
    vm_item(page, "test", "local").wait_for()
    vm_item(page, "app3").wait_for(state="detached")
    page.screenshot(path=str(artifacts / "ui-vms-host-unreachable.png"))

    # back: connected again, the notices go, its VMs are listed again
    cluster3["h3"].start()  # a fresh test driver: its own "test" VM only
    cluster3["h3"].define_vm("app3b")
    banner.wait_for(state="hidden", timeout=30_000)
    vm_item(page, "app3b").wait_for(timeout=30_000)
    assert "on h3" in vm_item(page, "app3b").locator(".vm-host").inner_text()
    page.locator("#nav-hosts").click()
    wait_state(page, "h3", "connected")
    assert page.locator("#hosts-down").is_hidden()
    assert page.locator("#nav-hosts-down").is_hidden()
    assert row(page, "h3").locator(".host-reason").count() == 0


def test_the_vms_page_shows_each_vms_host_filters_by_host_and_acts_on_its_host(
        page: Any, multi: Kimchi, cluster3: Cluster, artifacts: Path) -> None:  # noqa: F811
    k = multi
    open_page(page, k, "vms")
    vm_item(page, "test").wait_for()
    # one host: no host labels, no host filter
    assert page.locator("#vm-host-field").is_hidden()
    assert vm_item(page, "test").locator(".vm-host").is_hidden()

    cluster3["h2"].define_vm("app2", running=True)
    cluster3["h3"].define_vm("app3")
    add_host(k, cluster3, "h2")
    add_host(k, cluster3, "h3")
    # their VMs show up by themselves, each saying its host
    vm_item(page, "app3").wait_for(timeout=20_000)
    vm_item(page, "app2").wait_for(timeout=20_000)
    assert vm_item(page, "app3").locator(".vm-host").inner_text() == "on h3"
    assert vm_item(page, "app2").locator(".vm-host").inner_text() == "on h2"
    # "test" is on every host: a row for each, keyed by host and name, the local one first
    for host in ("local", "h2", "h3"):
        assert vm_item(page, "test", host).locator(".vm-host").inner_text() == f"on {host}"
    assert page.locator("#vm-host-field").is_visible()
    assert page.locator("#vm-host option").all_inner_texts() == ["All hosts", "local", "h2", "h3"]
    assert shown_vms(page) == [("h2", "app2"), ("h3", "app3"), ("local", "test"),
                               ("h2", "test"), ("h3", "test")]

    # the filter narrows the list to one host's VMs
    page.locator("#vm-host").select_option("h3")
    vm_item(page, "app2").wait_for(state="detached")
    assert shown_vms(page) == [("h3", "app3"), ("h3", "test")]
    assert page.locator("#vm-count").inner_text().startswith("2 of 5 guests")
    page.locator("#vm-host").select_option("local")
    vm_item(page, "app3").wait_for(state="detached")
    assert shown_vms(page) == [("local", "test")]
    page.locator("#vm-host").select_option("")
    vm_item(page, "app3").wait_for()
    assert len(shown_vms(page)) == 5

    # another host's VM offers what a local one does
    app3 = vm_item(page, "app3")
    assert app3.locator(".vm-actions button:visible").all_inner_texts() == [
        "Start", "Edit", "Clone", "Make template", "Migrate", "Delete"]
    page.screenshot(path=str(artifacts / "ui-vms-hosts.png"))
    # started from its row: on its own host
    app3.get_by_role("button", name="Start app3").click()
    page.wait_for_selector('#vm-list > li[data-name="app3"][data-state="running"]')
    page.wait_for_selector('#vm-list > li[data-name="app3"][aria-busy="false"]')
    assert app3.locator(".vm-error").is_hidden()
    assert cluster3["h3"].keep.lookupByName("app3").isActive()
    assert k.get("/hosts/h3/vms/app3").json()["state"] == "running"
    assert "Power off" in app3.locator(".vm-actions button:visible").all_inner_texts()
    app3.get_by_role("button", name="Power off app3").click()
    page.wait_for_selector('#vm-list > li[data-name="app3"][data-state="shutoff"]')
    assert not cluster3["h3"].keep.lookupByName("app3").isActive()

    # a host removed: its VMs go, and with one host left the filter goes too
    assert k.delete("/hosts/h2").status_code == 204
    vm_item(page, "app2").wait_for(state="detached")
    assert k.delete("/hosts/h3").status_code == 204
    vm_item(page, "app3").wait_for(state="detached")
    page.wait_for_selector("#vm-host-field", state="hidden")
    assert vm_item(page, "test").locator(".vm-host").is_hidden()


def test_each_connected_hosts_row_shows_its_cpu_and_memory_in_use_live(
        page: Any, sampled: Kimchi, cluster3: Cluster, artifacts: Path) -> None:  # noqa: F811
    from tests.conftest import wait_for

    k = sampled
    add_host(k, cluster3, "h2")
    # h2's figures come from its libvirtd: its memory (the test driver's), no CPU use (the
    # test driver's CPU times never move)
    h2 = wait_for(lambda: k.get("/hosts/h2/stats").json(), what="a sample of h2")
    assert h2["host"] == "h2" and h2["cpu_utilization"] is None
    open_page(page, k, "hosts")
    wait_state(page, "h2", "connected")
    headers = page.locator("#host-table thead th").all_inner_texts()
    assert headers[2:4] == ["CPUs\nuse now", "Memory\nin use"]

    # the local host's own: a CPU % and memory in use, once its first notice came
    page.wait_for_selector('#host-rows > tr[data-name="local"] .host-cpu-use:has-text("%")')
    cpu, memory = in_use(page, "local")
    assert cpu.endswith(" %") and float(cpu[:-2]) >= 0
    assert " of " in memory and memory.endswith("iB")
    page.wait_for_selector('#host-rows > tr[data-name="h2"] .host-mem-use:has-text(" of ")')
    assert in_use(page, "h2") == ("—", in_use_text(h2["memory"]))  # CPU null: not 0 %
    page.screenshot(path=str(artifacts / "ui-hosts-figures.png"))

    # the notices change the cells, never the rows (nor what has the keyboard)
    page.evaluate("() => { window.rowsBefore = [...document.querySelectorAll('#host-rows > tr')]; }")
    row(page, "h2").get_by_role("button", name="Remove host h2").focus()
    t0 = k.get("/host/stats").json()["time"]
    wait_for(lambda: k.get("/host/stats").json()["time"] >= t0 + 2, what="four samples more")
    assert page.evaluate(
        "() => { const now = [...document.querySelectorAll('#host-rows > tr')];"
        " return now.length === window.rowsBefore.length"
        " && now.every((r, i) => r === window.rowsBefore[i]); }")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") \
        == "Remove host h2"

    # a host that goes away: no figures until it is back
    cluster3["h2"].kill()
    wait_state(page, "h2", "unreachable")
    assert in_use(page, "h2") == ("—", "—")
    assert in_use(page, "local")[0].endswith(" %")
