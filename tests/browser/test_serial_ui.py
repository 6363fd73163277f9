"""The VM serial console in a real Chromium: xterm.js (Debian's node-xterm, put in one script
by kimchid) over kimchid's WebSocket to a real QEMU guest on libvirtd, whose boot sector
writes a line to its serial port every second and answers keys in capitals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PageProblems
from tests.conftest import Kimchi
from tests.integration.test_serial_console import BANNER, serial_guests, system  # noqa: F401

pytestmark = pytest.mark.browser

# The terminal's text: xterm.js draws on a canvas and keeps each row's text in its
# accessibility tree, for screen readers
TERMINAL_TEXT = "() => document.querySelector('#serial-screen .xterm-accessibility-tree')" \
                "?.innerText || ''"


def test_the_serial_page_shows_the_guests_output_and_takes_keys(
        page: Any, problems: PageProblems, system: Kimchi,  # noqa: F811
        serial_guests: tuple[str, str], artifacts: Path) -> None:  # noqa: F811
    k, (guest, _off) = system, serial_guests
    page.goto(k.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator(f'#vm-list > li[data-name="{guest}"]')
    row.get_by_role("button", name=f"Serial {guest}", exact=True).click()
    page.wait_for_url(f"**/#/serial/{guest}")
    expect(page.locator("#serial-title")).to_have_text(f"Serial console of {guest}")
    page.wait_for_function(
        "() => document.getElementById('serial-status').dataset.kind === 'ok'")
    assert page.locator("#serial-status").inner_text().startswith("Connected")
    page.wait_for_function(f"() => ({TERMINAL_TEXT})().includes({BANNER!r})", timeout=20_000)
    # sized to fit its box: more than the default 80x24
    # sized to fit its box (a cell's width and height of room at most, and the padding)
    room = page.evaluate("""() => {
      const c = document.querySelector('#serial-screen canvas.xterm-text-layer');
      const box = document.getElementById('serial-screen').getBoundingClientRect();
      return [box.width - c.width, box.height - c.height]; }""")
    assert 0 <= room[0] < 40 and 0 <= room[1] < 40, room

    # keys typed reach the guest, which answers in capitals
    page.locator("#serial-screen").click()
    page.keyboard.type("kimchi")
    page.wait_for_function(f"() => ({TERMINAL_TEXT})().includes('KIMCHI')")
    page.screenshot(path=str(artifacts / "ui-serial.png"))

    # the VM stops: the page says so, and offers to reconnect
    assert k.post(f"/vms/{guest}/poweroff").status_code == 200
    page.wait_for_function(
        "() => document.getElementById('serial-status').dataset.kind === 'error'")
    assert page.locator("#serial-status").inner_text() == "Closed: the VM stopped."
    reconnect = page.get_by_role("button", name="Reconnect")
    expect(reconnect).to_be_visible()
    # refused now: the reason is said (Chromium logs the refused handshake,
    # and the page's GET of the address, which answers why
    problems.allowed += ["/serial' failed: Error during WebSocket handshake: Unexpected "
                         "response code: 400",
                         "the server responded with a status of 400 (Bad Request)"]
    reconnect.click()
    expect(page.locator("#serial-status")).to_contain_text("KCHVM0020E")
    page.get_by_role("link", name="Back to the VMs").click()
    page.locator("#vms").wait_for()
    assert page.locator("#serial").is_hidden()
    # a shut-off VM offers no serial console
    assert row.get_by_role("button", name=f"Serial {guest}", exact=True).is_hidden()
