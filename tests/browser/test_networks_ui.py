"""The networks page in a real Chromium, on libvirt's test driver: a NAT network made
with a free subnet, a clashing subnet explained, the network stopped and deleted."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser



def net_row(page: Any, name: str) -> Any:
    return page.locator(f'#net-rows > tr[data-name="{name}"]')


def test_admin_makes_a_network_and_deletes_it(page: Any, idle_kimchi: Kimchi, problems: Any,
                                              artifacts: Path) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused request itself
    k = idle_kimchi
    page.goto(k.url + "/#/networks")
    page.wait_for_selector('#conn[data-state="live"]')
    default = net_row(page, "default")
    default.wait_for()
    assert "192.168.122.0/24" in default.inner_text() and "NAT" in default.inner_text()
    assert "test" in default.inner_text()  # the driver's VM uses it
    page.evaluate("() => { window.__noReload = true; }")

    # a subnet that clashes: the server's reason, the field marked
    page.get_by_label("Network name").fill("lab")
    page.get_by_label("Subnet").fill("192.168.122.0/25")
    page.get_by_role("button", name="Make network").click()
    page.locator("#net-error:not([hidden])").wait_for()
    assert "KCHNET0011E" in page.locator("#net-error").inner_text()
    assert page.get_by_label("Subnet").get_attribute("aria-invalid") == "true"

    # left empty, the server picks a free one
    page.get_by_label("Subnet").fill("")
    page.get_by_role("button", name="Make network").click()
    row = net_row(page, "lab")
    row.wait_for()
    subnet = k.get("/networks/lab").json()["subnet"]
    assert ipaddress.IPv4Network(subnet).prefixlen == 24 and subnet in row.inner_text()
    assert "Active" in row.inner_text()
    page.screenshot(path=str(artifacts / "ui-networks.png"))

    # bridged: the host interfaces to choose from are the host's bridges
    page.get_by_label("Kind").select_option("bridge")
    assert page.locator("#net-subnet-field").is_hidden()
    iface = page.get_by_label("Host interface")
    iface.wait_for()
    bridges = [i["name"] for i in k.get("/interfaces?type=bridge").json()]
    offered = iface.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert offered == (bridges or [""])
    page.get_by_label("Kind").select_option("nat")

    row.get_by_role("button", name="Deactivate lab", exact=True).click()
    row.get_by_role("button", name="Delete lab").click()
    dialog = page.locator("#confirm-dialog")
    assert subnet in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    row.wait_for(state="detached")
    assert k.get("/networks/lab").status_code == 404
    assert page.evaluate("window.__noReload") is True
