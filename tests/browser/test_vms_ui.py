"""The virtual machines page in a real Chromium, against the real daemon.

The daemon runs on libvirt's test driver (test:///default), whose one domain "test" is
running with one disk, /guest/diskimage1. Each test drives the page as a user would and
asserts what the user sees: the state chip, which actions are offered, the thumbnail,
the dialogs' words; and checks through the REST API that the server agrees.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser

RUNNING_ACTIONS = ["Shut down", "Power off", "Reset", "Pause", "Delete"]
PAUSED_ACTIONS = ["Power off", "Resume", "Delete"]

# Records, for the item of one VM, every moment it was busy: the chip's words and the
# buttons a user could press then. The page is told nothing; it is only watched.
WATCH_BUSY = """name => {
  window.__busy = [];
  const li = document.querySelector(`#vm-list > li[data-name="${name}"]`);
  new MutationObserver(() => {
    if (li.getAttribute('aria-busy') !== 'true') return;
    const usable = [...li.querySelectorAll('.vm-actions button')]
      .filter(b => !b.hidden && !b.disabled).map(b => b.textContent);
    window.__busy.push({ chip: li.querySelector('.state').textContent, usable });
  }).observe(li, { attributes: true, subtree: true, childList: true, characterData: true });
}"""



def open_vms(page: Any, kimchi: Kimchi) -> None:
    page.goto(kimchi.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector("#vms:not([hidden])")
    page.evaluate("() => { window.__noReload = true; }")


def item(page: Any, name: str) -> Any:
    return page.locator(f'#vm-list > li[data-name="{name}"]')


def actions(page: Any, name: str) -> list[str]:
    """The action buttons a user sees on a VM, in order."""
    return item(page, name).locator(".vm-actions button:visible").all_inner_texts()


def wait_chip(page: Any, name: str, text: str, timeout: float = 15_000) -> None:
    try:
        page.wait_for_function(
            "([name, text]) => { const c = document.querySelector("
            "`#vm-list > li[data-name=\"${name}\"] .state`); return c && c.textContent === text; }",
            arg=[name, text], timeout=timeout)
    except Exception:
        shown = item(page, name).locator(".state").all_inner_texts()
        error = item(page, name).locator(".vm-error").all_inner_texts()
        raise AssertionError(f"{name}: wanted {text!r}, the chip says {shown}; "
                             f"error {error}") from None


def wait_idle(page: Any, name: str) -> None:
    page.wait_for_selector(f'#vm-list > li[data-name="{name}"][aria-busy="false"]')


def press(page: Any, name: str, action: str, then: str) -> None:
    """Press an action's button and wait for the chip to say ``then``."""
    item(page, name).get_by_role("button", name=f"{action} {name}").click()
    wait_chip(page, name, then)
    wait_idle(page, name)


def vm_names(page: Any) -> list[str]:
    return page.eval_on_selector_all("#vm-list > li:not(.vm-pending)",
                                     "ls => ls.map(l => l.dataset.name)")


def screenshot_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith("/screenshot") else None)
    return seen


def thumbnail_width(page: Any, name: str) -> int:
    return page.eval_on_selector(f'#vm-list > li[data-name="{name}"] .vm-shot',
                                 "i => i.hidden ? 0 : i.naturalWidth")


def offers(kimchi: Kimchi, path: str, method: str) -> bool:
    return method in kimchi.get("/openapi.json").json()["paths"].get(path, {})


# -- the tests ------------------------------------------------------------------------------


def test_actions_follow_the_state_and_the_chip_changes_live(
        page: Any, idle_kimchi: Kimchi, artifacts: Path) -> None:
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    assert item(page, "test").locator(".state").inner_text() == "Running"
    assert actions(page, "test") == RUNNING_ACTIONS
    spec = item(page, "test").locator(".vm-spec").inner_text()
    listed = kimchi.get("/vms/test").json()
    assert f"{listed['cpus']} vCPUs" in spec and "2 GiB" in spec and listed["uuid"] in spec, spec
    assert page.locator("#vm-count").inner_text() == "1 guest · 1 running"

    # Pause: the buttons are out of reach while the call runs, the chip says what happens
    page.evaluate(WATCH_BUSY, "test")
    press(page, "test", "Pause", "Paused")
    busy = page.evaluate("window.__busy")
    assert busy and all(b["usable"] == [] for b in busy), busy
    assert {b["chip"] for b in busy} == {"Pausing…"}, busy
    assert actions(page, "test") == PAUSED_ACTIONS
    assert "state-paused" in (item(page, "test").locator(".state").get_attribute("class") or "")
    assert kimchi.get("/vms/test").json()["state"] == "paused"
    page.screenshot(path=str(artifacts / "ui-vms-paused.png"))

    press(page, "test", "Resume", "Running")
    assert actions(page, "test") == RUNNING_ACTIONS

    press(page, "test", "Power off", "Shut off")
    off = ["Start", "Edit", "Clone", "Make template", "Delete"] if offers(kimchi, "/vms/{name}", "put") else ["Start", "Delete"]
    assert actions(page, "test") == off
    assert kimchi.get("/vms/test").json()["state"] == "shutoff"
    assert page.locator("#vm-count").inner_text() == "1 guest · 0 running"
    # focus stays in the row: the pressed button went, the first one left takes it
    assert page.evaluate("document.activeElement.textContent") == "Start"

    press(page, "test", "Start", "Running")
    press(page, "test", "Reset", "Running")
    press(page, "test", "Shut down", "Shut off")  # the test driver stops at once
    assert kimchi.get("/vms/test").json()["state"] == "shutoff"
    assert item(page, "test").locator(".vm-error").is_hidden()
    assert page.evaluate("window.__noReload") is True


def test_changes_made_elsewhere_show_without_reload(page: Any, idle_kimchi: Kimchi,
                                                   problems: Any) -> None:
    # a screenshot asked for just as the VM stops elsewhere is refused; Chromium logs it
    problems.allowed.append("status of 404")
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    for action, chip in (("suspend", "Paused"), ("resume", "Running"), ("poweroff", "Shut off"),
                         ("start", "Running")):
        assert kimchi.post(f"/vms/test/{action}").status_code == 200
        wait_chip(page, "test", chip)
    assert actions(page, "test") == RUNNING_ACTIONS
    assert page.evaluate("window.__noReload") is True


def test_refused_action_shows_the_servers_reason(page: Any, idle_kimchi: Kimchi,
                                                 problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POST itself
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()

    # someone powers the VM off between the page showing "Pause" and the click arriving
    def power_off_first(route: Any) -> None:
        assert kimchi.post("/vms/test/poweroff").status_code == 200
        route.continue_()

    page.route("**/vms/test/suspend", power_off_first)
    item(page, "test").get_by_role("button", name="Pause test").click()
    error = item(page, "test").locator(".vm-error")
    error.wait_for()
    text = error.inner_text()
    assert "KCHVM0010E" in text and "Cannot suspend virtual machine test: it is shutoff" in text, text
    wait_chip(page, "test", "Shut off")  # and the truth comes live
    wait_idle(page, "test")
    assert "Start" in actions(page, "test")
    assert item(page, "test").get_by_role("button", name="Start test").is_enabled()

    # the next action that works clears the message
    page.unroute("**/vms/test/suspend")
    press(page, "test", "Start", "Running")
    assert error.is_hidden()


def test_thumbnail_of_the_running_vm_and_a_placeholder_when_stopped(
        page: Any, idle_kimchi: Kimchi, artifacts: Path) -> None:
    kimchi = idle_kimchi
    caps = kimchi.get("/config/capabilities").json()
    asked = screenshot_requests(page)
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    thumb = item(page, "test").locator(".vm-thumb")
    placeholder = item(page, "test").locator(".vm-shot-off")
    if not caps["screenshot"]:
        # this host cannot take screenshots: no thumbnail at all, and none asked for
        assert thumb.is_hidden()
        page.wait_for_timeout(1500)
        assert asked == []
        return

    page.wait_for_function(
        "() => { const i = document.querySelector('#vm-list > li[data-name=\"test\"] .vm-shot');"
        " return i && !i.hidden && i.complete && i.naturalWidth > 0; }")
    assert thumbnail_width(page, "test") > 0
    assert placeholder.is_hidden()
    assert item(page, "test").locator(".vm-shot").get_attribute("alt") == "Screen of test"
    page.screenshot(path=str(artifacts / "ui-vms.png"))

    # refreshed every few seconds while it runs and is on screen
    deadline = time.monotonic() + 12
    while len(asked) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert len(asked) >= 2, asked

    # stopped: no screen, a placeholder that says why, and no more asking
    press(page, "test", "Power off", "Shut off")
    placeholder.wait_for()
    assert placeholder.inner_text() == "Shut off: no screen"
    assert thumbnail_width(page, "test") == 0
    before = len(asked)
    page.wait_for_timeout(6000)
    assert len(asked) == before, asked

    # started again: a fresh screen
    press(page, "test", "Start", "Running")
    page.wait_for_function(
        "() => { const i = document.querySelector('#vm-list > li[data-name=\"test\"] .vm-shot');"
        " return i && !i.hidden && i.naturalWidth > 0; }", timeout=15_000)


def test_no_thumbnails_when_capabilities_say_no_screenshot(page: Any, idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    caps = kimchi.get("/config/capabilities").json()

    # the host's answer, as a host without screenshots would give it
    def without_screenshots(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({**caps, "screenshot": False}))

    page.route("**/config/capabilities", without_screenshots)
    asked = screenshot_requests(page)
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    page.wait_for_selector('#vm-list > li[data-name="test"].no-thumb')
    assert item(page, "test").locator(".vm-thumb").is_hidden()
    page.wait_for_timeout(2000)
    assert asked == []
    assert actions(page, "test") == RUNNING_ACTIONS  # the rest is all there


def test_delete_asks_first_naming_the_disks_then_the_vm_is_gone(
        page: Any, idle_kimchi: Kimchi, artifacts: Path) -> None:
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()

    item(page, "test").get_by_role("button", name="Delete test").click()
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.getElementById('confirm-dialog').open") is True
    assert dialog.get_by_role("heading").inner_text() == "Delete virtual machine?"
    text = " ".join(dialog.inner_text().split())
    assert "The virtual machine “test” will be deleted (it is powered off first)." in text, text
    assert "Its disk will be deleted too:" in text, text
    assert dialog.locator(".path-list li").all_inner_texts() == ["/guest/diskimage1"]
    assert "CD-ROM images are never deleted." in text, text
    page.screenshot(path=str(artifacts / "ui-vms-delete.png"))

    # cancelled: nothing happens, focus goes back to the Delete button
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    assert kimchi.get("/vms/test").status_code == 200
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Delete test"

    item(page, "test").get_by_role("button", name="Delete test").click()
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Delete").click()
    dialog.wait_for(state="hidden")
    item(page, "test").wait_for(state="detached")
    assert kimchi.get("/vms/test").status_code == 404
    assert page.locator("#vm-empty").is_visible()
    assert page.locator("#vm-count").inner_text() == "0 guests · 0 running"
    assert page.locator("#nav-vm-count").is_hidden()
    assert page.evaluate("window.__noReload") is True


def test_filter(page: Any, idle_kimchi: Kimchi) -> None:
    open_vms(page, idle_kimchi)
    item(page, "test").wait_for()
    page.get_by_label("Search").fill("running")
    assert vm_names(page) == ["test"]
    page.get_by_label("Search").fill("nothing-like-it")
    page.wait_for_function("() => document.querySelectorAll('#vm-list > li').length === 0")
    assert page.locator("#vm-empty").inner_text() == "No virtual machine matches “nothing-like-it”."
    assert page.locator("#vm-count").inner_text() == "0 of 1 guest · 1 running"
    page.get_by_label("Search").fill("")
    item(page, "test").wait_for()


def test_distributions_offered_only_when_the_server_has_them(
        page: Any, idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    card = page.locator("#distro-card")
    if not offers(kimchi, "/config/distros", "get"):
        page.goto(kimchi.url + "/#/templates")
        page.wait_for_selector('#conn[data-state="live"]')
        page.wait_for_timeout(1000)  # the page has asked for the routes by now
        assert card.is_hidden()
        return
    # an entry of the admin's own, at a name that never resolves (no test reaches the
    # Internet; a loopback address would be refused as an outbound destination)
    url = "http://fedora-mirror.invalid/media/Fedora-40.iso"
    folder = kimchi.dir / "objects" / "distros"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "local-fedora-40.json").write_text(json.dumps(
        {"os_distro": "fedora", "os_version": "40", "os_arch": "x86_64", "path": url}))
    listed = {d["name"] for d in kimchi.get("/config/distros").json()}
    assert "local-fedora-40" in listed

    page.goto(kimchi.url + "/#/templates")
    page.wait_for_selector('#conn[data-state="live"]')
    card.wait_for()
    shown = card.locator(".distro-title").all_inner_texts()
    assert sorted(shown, key=str.lower) == sorted(listed, key=str.lower), shown
    entry = card.locator(".distro-item", has_text="local-fedora-40")
    assert entry.locator(".distro").inner_text() == "fedora 40"
    entry.get_by_role("button", name="Create a template from local-fedora-40").click()
    page.wait_for_selector('#tmpl-rows tr[data-name="local-fedora-40"]')
    assert page.locator("#distro-error").is_hidden()
    made = kimchi.get("/templates/local-fedora-40").json()
    assert made["source_media"]["path"] == url, made
    assert (made["os_distro"], made["os_version"]) == ("fedora", "40"), made


# -- making and changing VMs (POST /vms, PUT /vms/<name>) -----------------------------------


def make_template(kimchi: Kimchi, folder: Path, name: str) -> Path:
    iso = folder / f"{name}.iso"
    make_iso(iso, "Fedora-WS-Live-39-1-5")
    made = kimchi.post("/templates", {"name": name,
                                      "source_media": {"type": "disk", "path": str(iso)}})
    assert made.status_code == 201, made.text
    return iso


def template_choices(page: Any) -> dict[str, tuple[bool, bool, str]]:
    """The New VM dialog's templates: {name: (checked, usable, words shown)}."""
    picks = page.eval_on_selector_all(
        "#vm-new-templates label",
        "ls => ls.map(l => { const i = l.querySelector('input');"
        " return [i.value, i.checked, !i.disabled, l.innerText]; })")
    return {n: (checked, usable, " ".join(text.split())) for n, checked, usable, text in picks}


def new_vm(page: Any, name: str = "") -> Any:
    page.get_by_role("button", name="+ New VM").click()
    dialog = page.locator("#vm-new-dialog")
    dialog.wait_for(state="visible")
    page.get_by_label("Name of the new VM").fill(name)
    dialog.get_by_role("button", name="Create").click()
    return dialog


def test_new_vm_from_a_template_appears_live(page: Any, idle_kimchi: Kimchi, tmp_path: Path,
                                             artifacts: Path, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POST itself
    kimchi = idle_kimchi
    iso = make_template(kimchi, tmp_path, "f39")
    make_template(kimchi, tmp_path, "gone").unlink()  # its ISO went: it cannot make a VM
    open_vms(page, kimchi)
    item(page, "test").wait_for()

    page.get_by_role("button", name="+ New VM").click()
    dialog = page.locator("#vm-new-dialog")
    dialog.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('#vm-new-templates label').length === 2")
    page.wait_for_function(
        "() => document.querySelector('#vm-new-templates input[value=\"gone\"]').disabled")
    choices = template_choices(page)
    assert choices["f39"][:2] == (True, True), choices
    assert "fedora 39" in choices["f39"][2] and "2 GiB · 1 vCPU · 20 GB disk" in choices["f39"][2]
    assert choices["gone"][:2] == (False, False), choices
    assert "Cannot be used: ISO missing" in choices["gone"][2], choices
    name_field = page.get_by_label("Name of the new VM")
    assert name_field.get_attribute("placeholder") == "f39-vm-N"
    page.screenshot(path=str(artifacts / "ui-vms-new.png"))
    name_field.fill("web1")
    dialog.get_by_role("button", name="Create").click()
    dialog.wait_for(state="hidden")

    # the task in the panel, then the VM in the list, made by the server
    card = page.locator("#task-list > li.task").first
    card.wait_for()
    assert card.locator(".task-kind").inner_text() == "New VM"
    assert card.locator(".task-target").inner_text() == "web1 from f39"
    page.wait_for_selector('#task-list > li.task[data-status="finished"]')
    item(page, "web1").wait_for()
    wait_chip(page, "web1", "Shut off")
    off = ["Start", "Edit", "Clone", "Make template", "Delete"]
    assert actions(page, "web1") == off
    assert "1 vCPU · 2 GiB" in item(page, "web1").locator(".vm-spec").inner_text()
    assert kimchi.get("/vms/web1").json()["state"] == "shutoff"

    # no name: the server names it after the template
    dialog = new_vm(page)
    dialog.wait_for(state="hidden")
    # (the row of the VM being made has its name too: wait for the VM itself)
    page.locator('#vm-list > li[data-name="f39-vm-1"]:not(.vm-pending)').wait_for()
    assert vm_names(page) == ["f39-vm-1", "test", "web1"]

    # a name that is taken: the server's reason, in the dialog, which stays open
    dialog = new_vm(page, "web1")
    error = page.locator("#vm-new-error")
    error.wait_for()
    assert "KCHVM0001E" in error.inner_text() and "web1 already exists" in error.inner_text()
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")

    # deleting it names its disk, and keeps the ISO
    disks = [d["path"] for d in kimchi.get("/vms/web1").json()["disks"] if d["device"] == "disk"]
    item(page, "web1").get_by_role("button", name="Delete web1").click()
    confirm = page.locator("#confirm-dialog")
    confirm.wait_for(state="visible")
    text = " ".join(confirm.inner_text().split())
    assert "“web1” will be deleted." in text, text
    assert confirm.locator(".path-list li").all_inner_texts() == disks
    assert f"CD-ROMs are kept: {iso}." in text, text
    confirm.get_by_role("button", name="Delete").click()
    item(page, "web1").wait_for(state="detached")
    assert kimchi.get("/vms/web1").status_code == 404
    assert page.evaluate("window.__noReload") is True


def test_a_failed_creation_says_why(page: Any, kimchi_factory: Any, redis_db: RedisServer,
                                    tmp_path: Path) -> None:
    # every step of the job lasts 0.8 s, and a job may last 1 s: it times out, and fails
    kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                            extra={"workers": {"job_timeout": 1.0}},
                            env={"KIMCHI_FAULT_SLOW_REPORTS": "0.8"})
    make_template(kimchi, tmp_path, "f39")
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    new_vm(page, "slow1").wait_for(state="hidden")

    # while it is being made, it has a row of its own
    making = page.locator('#vm-list > li.vm-pending[data-name="slow1"]')
    making.wait_for()
    assert making.locator(".state").inner_text() == "Creating"

    notice = page.locator("#vm-notice")
    notice.wait_for(timeout=20_000)
    text = notice.inner_text()
    assert "The virtual machine “slow1” could not be made: KCHTASK0006E" in text, text
    assert "timed out" in text, text
    page.wait_for_selector('#task-list > li.task[data-status="failed"]')
    assert "Reason: KCHTASK0006E" in page.locator("#task-list .task-message").first.inner_text()
    making.wait_for(state="detached")
    assert "slow1" not in vm_names(page)
    assert kimchi.get("/vms/slow1").status_code == 404
    page.get_by_role("button", name="Dismiss this message").click()
    assert notice.is_hidden()


def test_edit_a_vm_that_is_shut_off(page: Any, idle_kimchi: Kimchi, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused PUT itself
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    assert "Edit" not in actions(page, "test")  # running: not offered
    press(page, "test", "Power off", "Shut off")

    item(page, "test").get_by_role("button", name="Edit test").click()
    dialog = page.locator("#vm-edit-dialog")
    dialog.wait_for(state="visible")
    assert page.get_by_label("Memory in MiB").input_value() == "2048"
    assert page.get_by_label("Virtual CPUs").input_value() == "2"

    # refused by the server: its reason, in the dialog
    page.get_by_label("Virtual CPUs").fill("600")
    dialog.get_by_role("button", name="Save").click()
    error = page.locator("#vm-edit-error")
    error.wait_for()
    assert "KCHAPI0006E" in error.inner_text() and "600" in error.inner_text()

    page.get_by_label("Name", exact=True).fill("renamed")
    page.get_by_label("Memory in MiB").fill("1024")
    page.get_by_label("Virtual CPUs").fill("1")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    item(page, "renamed").wait_for()
    assert vm_names(page) == ["renamed"]
    assert "1 vCPU · 1 GiB" in item(page, "renamed").locator(".vm-spec").inner_text()
    got = kimchi.get("/vms/renamed").json()
    assert got["cpus"] == 1 and got["memory"]["current"] == 1024, got
    assert kimchi.get("/vms/test").status_code == 404
    press(page, "renamed", "Start", "Running")


def stat_figures(page: Any, name: str) -> dict[str, str]:
    rows = item(page, name).locator(".vm-stats .stat")
    return {r.locator("dt").inner_text(): r.locator(".stat-val").inner_text()
            for r in rows.all()}


def test_figures_of_a_running_vm(page: Any, idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    stats = item(page, "test").locator(".vm-stats")
    stats.wait_for()
    figures = stat_figures(page, "test")
    assert list(figures) == ["CPU", "Memory", "Disk", "Network"], figures
    live = kimchi.get("/vms/test").json()["stats"]
    assert figures["CPU"] == f"{round(live['cpu_utilization'])} %", (figures, live)
    assert figures["Memory"] == f"{round(live['mem_utilization'])} %", (figures, live)
    assert figures["Disk"].endswith("/s") and figures["Network"].endswith("/s"), figures
    meter = item(page, "test").locator(".stat-cpu meter")
    assert meter.get_attribute("max") == "100"

    # only running VMs have figures
    press(page, "test", "Pause", "Paused")
    assert stats.is_hidden()
    press(page, "test", "Resume", "Running")
    press(page, "test", "Power off", "Shut off")
    assert stats.is_hidden()
    press(page, "test", "Start", "Running")
    stats.wait_for()


def test_libvirt_away_the_banner_and_the_page_say_so(page: Any, kimchi_factory: Any,
                                                   artifacts: Path,
                                                   redis_db: RedisServer,
                                                   problems: Any, tmp_path: Path) -> None:
    problems.allowed.append("status of 503")  # Chromium logs the refused listing itself
    # a libvirt that cannot be reached: a test driver whose definitions file is not there
    kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                            extra={"libvirt": {"uri": f"test://{tmp_path}/no-such-file.xml"}})
    assert kimchi.get("/vms").status_code == 503
    page.goto(kimchi.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="degraded"]')
    banner = page.locator("#banner")
    banner.wait_for()
    problem = banner.locator('#banner-problems > li[data-problem="libvirt"]')
    assert "libvirtd" in problem.inner_text(), banner.inner_text()
    assert "start libvirtd" in problem.locator(".banner-fix").inner_text()
    empty = page.locator("#vm-empty")
    empty.wait_for()
    assert "The virtual machines cannot be listed: KCHSVC0002E" in empty.inner_text()
    assert page.locator("#vm-count").inner_text() == "Unavailable"
    assert page.get_by_role("button", name="+ New VM").is_disabled()
    page.screenshot(path=str(artifacts / "ui-vms-libvirt-away.png"))
