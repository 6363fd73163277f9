"""The VM console in a real Chromium: noVNC (Debian's) over kimchid's WebSocket to a real
QEMU guest on libvirtd, whose boot program prints a line of text on its screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.integration.test_console import URI, guest  # noqa: F401 (fixture)
from tests.integration.test_vm_e2e import boot_iso  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

LIT_PIXELS = """() => {
  const c = document.querySelector('#console-screen canvas');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 200) lit += 1;
  return lit;
}"""


@pytest.fixture
def system(kimchi_factory: Any, redis_db: RedisServer, libvirtd: Any) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0, extra={"libvirt": {"uri": URI}})


def test_the_console_shows_the_guests_screen(page: Any, system: Kimchi, guest: str,  # noqa: F811
                                             artifacts: Path) -> None:
    k = system
    wait_for(lambda: k.get(f"/vms/{guest}").status_code == 200, what="the guest listed")
    page.goto(k.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator(f'#vm-list > li[data-name="{guest}"]')
    row.get_by_role("button", name=f"Console {guest}", exact=True).click()
    page.wait_for_url(f"**/#/console/{guest}")
    # the URL changes before the page's route handler runs: wait for the title it sets
    expect(page.locator("#console-title")).to_have_text(f"Console of {guest}")
    page.wait_for_function(
        "() => document.getElementById('console-status').dataset.kind === 'ok'", timeout=15_000)
    assert page.locator("#console-status").inner_text().startswith("Connected")
    # the guest's text, drawn by noVNC from the RFB stream
    page.wait_for_function(f"() => ({LIT_PIXELS})() > 50", timeout=30_000)
    page.screenshot(path=str(artifacts / "ui-console.png"))

    # the VM stops: the console says so
    assert k.post(f"/vms/{guest}/poweroff").status_code == 200
    page.wait_for_function(
        "() => document.getElementById('console-status').dataset.kind === 'error'",
        timeout=15_000)
    assert "Disconnected" in page.locator("#console-status").inner_text()
    page.get_by_role("link", name="Back to the VMs").click()
    page.locator("#vms").wait_for()
    assert page.locator("#console").is_hidden()
    # a shut-off VM offers no console
    assert row.get_by_role("button", name=f"Console {guest}", exact=True).is_hidden()
