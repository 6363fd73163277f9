"""The storage, networks and ISO pages with several hosts, in a real Chromium against a
simulated cluster (tests/cluster.py: h1..h3, each a libvirtd of its own serving the test
driver).

The local host is h1 (``[libvirt] uri``, named ``local`` by kimchi); h2 is added with the
API. Each host has a pool "default-pool" and a network "default" (the test driver's), and
the local host also the pool "default" kimchid makes. Each test drives a page as an admin
would and checks with libvirt itself that what was done was done on the right host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, add_host, cluster3, host_worker, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, wait_for
from tests.pages import open_page

pytestmark = pytest.mark.browser






def pool_row(page: Any, host: str, name: str) -> Any:
    return page.locator(f'#pool-rows > tr[data-host="{host}"][data-name="{name}"]')


def net_row(page: Any, host: str, name: str) -> Any:
    return page.locator(f'#net-rows > tr[data-host="{host}"][data-name="{name}"]')


def shown(page: Any, tbody: str) -> list[tuple[str, str]]:
    return [tuple(x) for x in page.eval_on_selector_all(
        f"#{tbody} > tr", "els => els.map(e => [e.dataset.host || '', e.dataset.name])")]


def test_the_storage_page_lists_each_hosts_pools_and_acts_on_the_right_host(
        page: Any, multi: Kimchi, cluster3: Cluster, artifacts: Path) -> None:  # noqa: F811
    k = multi
    h1, h2 = cluster3["h1"].keep, cluster3["h2"].keep
    # one host: the page as it always was (no host said, no filter, no host chooser)
    open_page(page, k, "storage")
    page.locator('#pool-rows > tr[data-name="default-pool"]').wait_for()
    assert page.locator("#pool-rows > tr[data-host]").count() == 0
    assert page.locator("#pool-rows .obj-host").count() == 0
    assert page.locator("#pool-filter-host-field").is_hidden()
    assert page.locator("#pool-new-host-field").is_hidden()
    page.evaluate("() => { window.__noReload = true; }")

    # h2 comes: its pools are listed live, each row saying its host
    add_host(k, cluster3, "h2")
    pool_row(page, "h2", "default-pool").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#pool-rows > tr').length === 3")
    assert sorted(shown(page, "pool-rows")) == [
        ("h2", "default-pool"), ("local", "default"), ("local", "default-pool")]
    assert pool_row(page, "h2", "default-pool").locator(".obj-host").inner_text() == "on h2"
    assert pool_row(page, "local", "default-pool").locator(".obj-host").inner_text() == "on local"
    assert page.locator("#pool-count").inner_text() == "3 pools · 3 active"

    # the host filter narrows to one host's pools
    host_filter = page.locator("#pool-filter-host")
    assert host_filter.is_visible()
    assert host_filter.locator("option").all_inner_texts() == ["All hosts", "local", "h2"]
    host_filter.select_option("h2")
    page.wait_for_function("() => document.querySelectorAll('#pool-rows > tr').length === 1")
    assert shown(page, "pool-rows") == [("h2", "default-pool")]
    assert page.locator("#pool-count").inner_text() == "1 of 3 pools · 1 active"

    # a volume made in h2's pool is made on h2, at the pool's canonical address
    row = pool_row(page, "h2", "default-pool")
    row.get_by_role("button", name="Volumes of default-pool on h2").click()
    volumes = page.locator("#volumes")
    volumes.wait_for()
    assert volumes.locator("h2").inner_text() == "Volumes of default-pool on h2"
    page.get_by_label("Volume name").fill("ui-h2.qcow2")
    page.get_by_label("Size (GiB)").fill("1")
    page.get_by_role("button", name="Make volume").click()
    vol = page.locator('#volume-rows > tr[data-name="ui-h2.qcow2"]')
    vol.wait_for()
    assert "ui-h2.qcow2" in h2.storagePoolLookupByName("default-pool").listVolumes()
    assert "ui-h2.qcow2" not in h1.storagePoolLookupByName("default-pool").listVolumes()
    got = k.get("/hosts/h2/storagepools/default-pool/storagevolumes/ui-h2.qcow2").json()
    assert got["host"] == "h2" and got["capacity"] == 1024 ** 3
    page.screenshot(path=str(artifacts / "ui-storage-hosts.png"))
    # and deleted there
    vol.get_by_role("button", name="Delete ui-h2.qcow2").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    vol.wait_for(state="detached")
    assert "ui-h2.qcow2" not in h2.storagePoolLookupByName("default-pool").listVolumes()

    # every host's again: the local host's pool of the same name is another row
    host_filter.select_option("")
    page.wait_for_function("() => document.querySelectorAll('#pool-rows > tr').length === 3")
    assert volumes.is_visible()  # h2's pool is still shown, still the chosen one
    assert "is-chosen" in (row.get_attribute("class") or "")
    assert "is-chosen" not in (pool_row(page, "local", "default-pool").get_attribute("class") or "")

    # a new pool on h2: made there (POST /hosts/h2/storagepools), not on the local host
    chooser = page.locator("#pool-new-host")
    assert chooser.is_visible()
    assert chooser.input_value() == "local"  # the local host's by default
    chooser.select_option("h2")
    page.get_by_label("Pool name").fill("h2-disks")
    page.get_by_label("Pool folder").fill("/srv/h2-disks")
    page.get_by_role("button", name="Make pool").click()
    made = pool_row(page, "h2", "h2-disks")
    made.wait_for()
    assert h2.storagePoolLookupByName("h2-disks").isActive()
    assert "h2-disks" not in h1.listStoragePools() + h1.listDefinedStoragePools()
    assert k.get("/hosts/h2/storagepools/h2-disks").json()["host"] == "h2"
    assert page.locator("#pool-error").is_hidden()
    # stopped and forgotten on h2 (the root address would not find it: not the local's)
    made.get_by_role("button", name="Deactivate h2-disks on h2", exact=True).click()
    made.get_by_role("button", name="Activate h2-disks on h2", exact=True).wait_for()
    assert not h2.storagePoolLookupByName("h2-disks").isActive()
    made.get_by_role("button", name="Delete h2-disks on h2").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Forget").click()
    made.wait_for(state="detached")
    assert "h2-disks" not in h2.listStoragePools() + h2.listDefinedStoragePools()
    assert k.get("/hosts/h2/storagepools/h2-disks").status_code == 404
    assert page.evaluate("window.__noReload") is True  # all of it without a reload


def test_the_networks_page_stops_another_hosts_network_on_that_host_only(
        page: Any, problems: Any, multi: Kimchi, cluster3: Cluster) -> None:  # noqa: F811
    problems.allowed.append("status of 400")  # the refused deactivation: Chromium logs it
    k = multi
    h1, h2 = cluster3["h1"].keep, cluster3["h2"].keep
    add_host(k, cluster3, "h2")
    open_page(page, k, "networks")
    net_row(page, "h2", "default").wait_for()
    net_row(page, "local", "default").wait_for()
    assert sorted(shown(page, "net-rows")) == [("h2", "default"), ("local", "default")]
    assert net_row(page, "h2", "default").locator(".obj-host").inner_text() == "on h2"
    # the form offers the host to make a new network on (tests/browser/test_remote_vms_ui.py)
    chooser = page.locator("#net-new-host")
    assert chooser.is_visible() and chooser.input_value() == "local"

    # h2's "test" VM runs on it: h2's own VMs are what counts, the refusal is h2's row's
    theirs = net_row(page, "h2", "default")
    theirs.get_by_role("button", name="Deactivate default on h2", exact=True).click()
    theirs.locator(".row-error").wait_for()
    assert "KCHNET0007E" in theirs.locator(".row-error").inner_text()
    assert net_row(page, "local", "default").locator(".row-error").count() == 0
    assert h2.networkLookupByName("default").isActive()

    assert k.post("/hosts/h2/vms/test/poweroff").status_code == 200
    theirs.get_by_role("button", name="Deactivate default on h2", exact=True).click()
    theirs.get_by_role("button", name="Activate default on h2", exact=True).wait_for()
    assert theirs.locator(".row-error").count() == 0
    assert not h2.networkLookupByName("default").isActive()
    assert h1.networkLookupByName("default").isActive()  # the local host's: untouched
    ours = net_row(page, "local", "default")
    assert ours.get_by_role("button", name="Deactivate default on local", exact=True).count() == 1
    assert "Inactive" in theirs.inner_text() and "Active" in ours.inner_text()

    # the host filter
    page.locator("#net-filter-host").select_option("local")
    page.wait_for_function("() => document.querySelectorAll('#net-rows > tr').length === 1")
    assert shown(page, "net-rows") == [("local", "default")]
    assert page.locator("#net-count").inner_text() == "1 of 2 networks · 1 active"
    page.locator("#net-filter-host").select_option("")
    page.wait_for_function("() => document.querySelectorAll('#net-rows > tr').length === 2")

    # started again, on h2
    theirs.get_by_role("button", name="Activate default on h2", exact=True).click()
    theirs.get_by_role("button", name="Deactivate default on h2", exact=True).wait_for()
    assert h2.networkLookupByName("default").isActive()


def test_the_scan_form_scans_a_folder_of_the_host_chosen(
        page: Any, multi: Kimchi, cluster3: Cluster, tmp_path: Path) -> None:  # noqa: F811
    k = multi
    open_page(page, k, "isos")
    page.wait_for_function("() => document.querySelector('#iso-count').textContent !== 'Loading…'")
    assert page.locator("#scan-host-field").is_hidden()  # one host: no chooser

    add_host(k, cluster3, "h2")
    chooser = page.locator("#scan-host")
    chooser.wait_for()
    assert chooser.locator("option").all_inner_texts() == ["local", "h2"]
    assert chooser.input_value() == "local"
    chooser.select_option("h2")
    page.get_by_label("Folder to scan").fill(str(tmp_path))
    page.get_by_role("button", name="Scan").click()

    def scan_task() -> Any:
        scans = [t for t in k.get("/tasks").json() if t["kind"] == "iso.scan"]
        return scans[0] if scans else None
    task = wait_for(scan_task, what="the scan's task")
    assert task["host"] == "h2" and task["params"]["path"] == str(tmp_path)
    # no worker serves h2 (nor any host here): the scan says it waits for one
    status = page.locator("#scan-status")
    page.wait_for_function(
        "() => document.querySelector('#scan-status').textContent.includes('KCHTASK0008E')")
    text = status.inner_text()
    assert f"{tmp_path} on h2 is waiting" in text and "h2" in text
    # and it can be stopped meanwhile
    stop = page.locator("#stop-btn")
    assert stop.get_attribute("aria-label") == f"Stop the scan of {tmp_path} on h2"
    stop.click()
    page.wait_for_function(
        "() => document.querySelector('#scan-status').textContent.includes('cancelled')")
    assert k.get(f"/tasks/{task['id']}").json()["status"] == "cancelled"


def test_a_report_of_another_host_is_made_there_and_listed_here(
        page: Any, kimchi_factory: Any, redis_db: Any, cluster3: Cluster,  # noqa: F811
        tmp_path: Path) -> None:
    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"debugreports": {"plugins": ["host"]},
                              "libvirt": {"uri": cluster3["h1"].uri}})
    open_page(page, k, "reports")
    assert page.locator("#report-host-field").is_hidden()  # one host: no chooser
    add_host(k, cluster3, "h2")
    worker = host_worker(tmp_path, redis_db.url, ["h2"], "worker-of-h2")
    try:
        page.locator("#report-host-field:not([hidden])").wait_for()
        page.locator("#report-host").select_option("h2")
        page.get_by_label("Report name").fill("of-h2")
        page.get_by_role("button", name="Make report").click()
        # one row while it is made (the worker's job is part of it, not a second report),
        # then the finished report, kept here
        page.locator('#report-rows > tr[data-name="of-h2"]').wait_for(timeout=60_000)
        assert page.locator("#report-making > tr").count() == 0
        [task] = k.get("/tasks?kind=debugreport.fetch").json()
        assert task["host"] == "h2" and task["status"] == "finished"
        assert k.get("/debugreports/of-h2").json()["size"] > 1000
    finally:
        worker.terminate()
        worker.wait(15)


# axe over the document: the violations it rates serious or critical
AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}"""


def test_the_host_controls_pass_axe(page: Any, multi: Kimchi, cluster3: Cluster,  # noqa: F811
                                    axe_source: str) -> None:
    k = multi
    add_host(k, cluster3, "h2")
    for where, ready in (("storage", '#pool-rows > tr[data-host="h2"]'),
                         ("networks", '#net-rows > tr[data-host="h2"]'),
                         ("isos", "#scan-host-field:not([hidden])")):
        open_page(page, k, where)
        page.wait_for_selector(ready)
        page.evaluate(axe_source)
        assert page.evaluate(AXE_RUN) == [], where
