"""Cloning a VM from the virtual machines page, in a real Chromium against the real daemon.

On libvirt's test driver (test:///default) the domain "test" runs, and its one disk,
/guest/diskimage1, is not a real file: the server refuses to clone it, and the page says
why. The last test clones for real, on a real libvirtd, a VM made from a template whose
disk is in a throw-away directory pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.test_vms_ui import actions, item, open_vms, press, wait_chip
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser

URI = "qemu:///system"
# KVM guests do not start on every machine (nested hosts): plain emulation is enough here
PLAIN_QEMU = {"libvirt": {"uri": URI}, "features": {"kvm": "off"}}

# Records every moment of the list while it changes: the rows' names, classes and chips.
# The page is told nothing; it is only watched.
WATCH_LIST = """() => {
  window.__rows = [];
  const list = document.getElementById('vm-list');
  new MutationObserver(() => {
    for (const li of list.children) {
      const chip = li.querySelector('.state');
      window.__rows.push({ name: li.dataset.name, pending: li.classList.contains('vm-pending'),
                           chip: chip ? chip.textContent : '' });
    }
  }).observe(list, { subtree: true, childList: true, characterData: true, attributes: true });
}"""



def open_clone(page: Any, name: str) -> Any:
    item(page, name).get_by_role("button", name=f"Clone {name}").click()
    dialog = page.locator("#vm-clone-dialog")
    dialog.wait_for(state="visible")
    return dialog


def clone_error(page: Any, dialog: Any, name: str) -> str:
    """Ask for a clone named ``name`` ('' for the server's choice): the dialog's error."""
    page.get_by_label("Name of the copy").fill(name)
    page.evaluate("() => { document.getElementById('vm-clone-error').hidden = true; }")
    dialog.get_by_role("button", name="Clone").click()
    error = page.locator("#vm-clone-error")
    error.wait_for()
    assert dialog.is_visible()  # it stays open, the name can be changed
    return " ".join(error.inner_text().split())


# -- on the test driver --------------------------------------------------------------------


def test_clone_is_offered_on_shut_off_vms_only(page: Any, idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    assert "Clone" not in actions(page, "test")  # running

    press(page, "test", "Power off", "Shut off")
    assert actions(page, "test") == ["Start", "Edit", "Clone", "Make template", "Delete"]
    assert item(page, "test").get_by_role("button", name="Clone test").is_enabled()

    press(page, "test", "Start", "Running")
    assert "Clone" not in actions(page, "test")
    press(page, "test", "Pause", "Paused")
    assert "Clone" not in actions(page, "test")

    # stopped elsewhere: offered again, live
    assert kimchi.post("/vms/test/poweroff").status_code == 200
    wait_chip(page, "test", "Shut off")
    assert "Clone" in actions(page, "test")
    assert page.evaluate("window.__noReload") is True


def test_a_refused_clone_shows_the_servers_reason_in_the_dialog(
        page: Any, idle_kimchi: Kimchi, problems: Any, artifacts: Path) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POSTs itself
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    press(page, "test", "Power off", "Shut off")

    dialog = open_clone(page, "test")
    assert dialog.get_by_role("heading").inner_text() == "Clone test"
    assert dialog.locator(".copy-list li").all_inner_texts() == ["/guest/diskimage1"]
    name = page.get_by_label("Name of the copy")
    assert name.get_attribute("placeholder") == "test-clone-N"
    assert page.evaluate("document.activeElement.id") == "vm-clone-name"
    page.screenshot(path=str(artifacts / "ui-vms-clone.png"))

    # the test driver's disk is no file the server could copy
    text = clone_error(page, dialog, "")
    assert "KCHVM0017E" in text and "Cannot copy disk /guest/diskimage1" in text, text
    assert name.get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(artifacts / "ui-vms-clone-refused.png"))
    # a name that is taken
    text = clone_error(page, dialog, "test")
    assert "KCHVM0001E" in text and "test already exists" in text, text
    # started elsewhere while the dialog was open
    assert kimchi.post("/vms/test/start").status_code == 200
    text = clone_error(page, dialog, "copy")
    assert "KCHVM0016E" in text and "must be shut off" in text, text

    # nothing was started, nothing is being made
    assert kimchi.get("/tasks?kind=vm.clone").json() == []
    assert page.locator("#vm-list > li.vm-pending").count() == 0
    assert page.locator("#task-list > li.task").count() == 0

    # typing clears the error; cancelling closes; focus goes back to the row, whose Clone
    # button went when the VM started
    name.fill("copy2")
    page.locator("#vm-clone-error").wait_for(state="hidden")
    wait_chip(page, "test", "Running")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    assert "Clone" not in actions(page, "test")
    # (focus moves once the dialog's closing has run: wait for it, do not sample it)
    page.wait_for_function(
        "() => document.activeElement?.closest('#vm-list > li')?.dataset.name === 'test'",
        timeout=5000)
    assert page.evaluate("window.__noReload") is True


def test_a_user_is_not_offered_clone(page: Any, idle_kimchi: Kimchi, pam_users: Any) -> None:
    kimchi = idle_kimchi
    user = pam_users.user
    assert kimchi.http.put(kimchi.url + "/vms/test", json={"users": [user.name]},
                           timeout=10).status_code == 200
    assert kimchi.post("/vms/test/poweroff").status_code == 200
    # signed in as the user, not as the admin the page fixture would sign in
    page.anonymous = True
    r = requests.post(kimchi.url + "/login", json={"username": user.name,
                                                   "password": user.password}, timeout=20)
    assert r.status_code == 200 and r.json()["role"] == "user", r.text
    page.context.add_cookies([{"name": "kimchi_session", "url": kimchi.url,
                               "value": r.cookies["kimchi_session"]}])
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    wait_chip(page, "test", "Shut off")
    assert actions(page, "test") == ["Start"]
    assert page.locator("#vm-clone-dialog").is_hidden()


# -- on a real libvirtd ----------------------------------------------------------------------


def test_a_clone_made_through_the_dialog_appears_in_the_list(
        page: Any, kimchi_factory: Any, redis_db: RedisServer, qemu_pool: Any,
        artifacts: Path) -> None:
    kimchi = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    iso = make_iso(qemu_pool.iso_dir / "f.iso", "Fedora-WS-Live-39-1-5")
    made = kimchi.post("/templates", {
        "name": "t", "source_media": {"type": "disk", "path": str(iso)},
        "disks": [{"index": 0, "size": 1, "pool": {"name": qemu_pool.name()}}]})
    assert made.status_code == 201, made.text
    wait_for(lambda: kimchi.get("/templates/t").json()["invalid"] == {}, what="a valid template")
    source = f"ui-{qemu_pool.tag}"
    task = kimchi.post("/vms", {"template": "t", "name": source}).json()
    assert kimchi.wait_task(task["id"])["status"] == "finished"
    copy = f"{source}-clone-1"

    open_vms(page, kimchi)
    item(page, source).wait_for()
    wait_chip(page, source, "Shut off")
    page.evaluate(WATCH_LIST)
    dialog = open_clone(page, source)
    assert page.get_by_label("Name of the copy").get_attribute("placeholder") == \
        f"{source}-clone-N"
    dialog.get_by_role("button", name="Clone").click()
    dialog.wait_for(state="hidden")

    # the clone's task in the panel, as a new VM's would be; its disk copy has no card
    card = page.locator("#task-list > li.task:not([hidden])").first
    card.wait_for()
    assert card.locator(".task-kind").inner_text() == "Clone VM"
    assert card.locator(".task-target").inner_text() == f"{copy}, a copy of {source}"
    page.wait_for_function(
        "() => document.querySelector('#task-list > li.task:not([hidden])').dataset.status"
        " === 'finished'",
        timeout=60_000)
    kinds = page.locator("#task-list > li.task:visible .task-kind").all_inner_texts()
    assert kinds == ["Clone VM", "New VM"], kinds  # the VM's own creation, before the page
    assert [t["status"] for t in kimchi.get("/tasks?kind=vm.clone.disks").json()] == ["finished"]
    assert page.locator("#task-summary").inner_text() == "None running · 2 shown"

    # the copy appears in the list, shut off, a VM of its own
    item(page, copy).wait_for()
    wait_chip(page, copy, "Shut off")
    assert actions(page, copy) == ["Start", "Edit", "Clone", "Make template", "Delete"]
    page.screenshot(path=str(artifacts / "ui-vms-cloned.png"))
    rows = page.evaluate("window.__rows")
    # while it was made: its own "Creating" row, and the source said it was being copied
    assert {"name": copy, "pending": True, "chip": "Creating"} in rows, rows
    assert {"name": source, "pending": False, "chip": "Being cloned"} in rows, rows
    assert page.locator("#vm-list > li.vm-pending").count() == 0
    got = kimchi.get(f"/vms/{copy}").json()
    assert got["state"] == "shutoff" and got["uuid"] != kimchi.get(f"/vms/{source}").json()["uuid"]
    wait_chip(page, source, "Shut off")  # the copy is made: the source may start again
    assert item(page, source).get_by_role("button", name=f"Start {source}").is_enabled()
    assert page.locator("#vm-notice").is_hidden()
    assert page.evaluate("window.__noReload") is True
