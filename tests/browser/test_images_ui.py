"""Disk-image templates in a real Chromium against the real daemon: a template made from a
qcow2/raw image on the Templates page, many linked VMs of it from the New VM dialog, the
cloud-init of templates and of new VMs, an image of another host, and a template made of a
shut-off VM ("Make template" on the VMs page).

The first tests run on libvirt's test driver (test:///default): a linked VM only needs the
base file on the daemon's own machine (qemu-img reads it; the leaves are libvirt's), but a
cloud-init seed cannot be uploaded there (virStorageVolUpload), so no VM is made from a
template with cloud-init. The last needs real files to copy, so it runs on the real
libvirtd, as test_vm_clone_ui.py's real clone does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bootdisk import make_boot_disk
from tests.browser.test_templates_vms import row, wait_templates
from tests.browser.test_vm_clone_ui import PLAIN_QEMU
from tests.browser.test_vms_ui import actions, item, open_vms, wait_chip
from tests.cluster import Cluster, add_host, cluster3, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.pages import open_page

pytestmark = pytest.mark.browser

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKimchiTestKeyOnlyForTheBrowserTests alice@desk"


def open_templates(page: Any, kimchi: Kimchi) -> None:
    open_page(page, kimchi, "templates")
    page.evaluate("() => { window.__noReload = true; }")


def image_template_from_the_form(page: Any, path: Path, name: str, user: str = "",
                                 shot: Path | None = None) -> None:
    """The New template form, source "Disk image"; with ``user``, a cloud-init user with a
    password and an SSH key; ``shot``: a screenshot of the form filled in."""
    page.get_by_role("radio", name="Disk image").check()
    assert page.get_by_label("ISO from the library").is_hidden()
    page.get_by_label("Path of the disk image").fill(str(path))
    page.get_by_label("Name (optional)").fill(name)
    if user:
        form = page.locator("#tmpl-form")
        form.locator("summary", has_text="cloud-init").click()
        form.get_by_label("User", exact=True).fill(user)
        form.get_by_label("User's password").fill("s3cret-pw")
        form.get_by_label("SSH public keys").fill(KEY + "\n")
    if shot:
        page.locator("#tmpl-form").screenshot(path=str(shot))
    page.get_by_role("button", name="Create template").click()


def task_card(page: Any, kind: str) -> Any:
    card = page.locator("#task-list > li.task:not([hidden])", has=page.locator(
        ".task-kind", has_text=kind)).first
    card.wait_for()
    return card


def wait_task_card(page: Any, kind: str, status: str = "finished",
                   timeout: float = 60_000) -> Any:
    """The newest task card of ``kind`` once it ended, which must be with ``status``."""
    card = task_card(page, kind)
    page.wait_for_function(
        "(kind) => [...document.querySelectorAll('#task-list > li.task')].some("
        "(t) => t.querySelector('.task-kind').textContent === kind"
        " && ['finished', 'failed', 'cancelled'].includes(t.dataset.status))",
        arg=kind, timeout=timeout)
    assert card.get_attribute("data-status") == status, card.inner_text()
    return card


def used_by(page: Any, template: str) -> str:
    return " ".join(row(page, template).locator(".tmpl-used").first.inner_text().split())


def test_an_image_template_and_three_linked_vms_of_it(
        page: Any, kimchi: Kimchi, tmp_path: Path, problems: Any, artifacts: Path) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POSTs itself
    folder = tmp_path / "images"
    folder.mkdir()
    image = make_boot_disk(folder / "tiny.img")
    open_templates(page, kimchi)

    # not a disk image: the server's reason, next to the form
    (folder / "notes.txt").write_text("not a disk\n" * 100)
    page.get_by_role("radio", name="Disk image").check()
    page.get_by_label("Path of the disk image").fill(str(folder / "notes.txt"))
    page.get_by_role("button", name="Create template").click()
    err = page.locator("#tmpl-error")
    err.wait_for()
    assert "KCHTMPL0020E" in err.inner_text(), err.inner_text()
    assert page.get_by_label("Path of the disk image").get_attribute("aria-invalid") == "true"

    image_template_from_the_form(page, image, "tiny")
    wait_templates(page, ["tiny"])
    assert page.locator("#tmpl-error").is_hidden()
    tiny = row(page, "tiny")
    assert tiny.locator(".tmpl-src").inner_text() == str(image)
    assert tiny.locator(".tmpl-image-text").inner_text() == "Disk image · raw · 1.0 MiB"
    assert used_by(page, "tiny") == "Used by no VM"
    assert tiny.locator(".tmpl-ci").inner_text() == "+ cloud-init"
    made = kimchi.get("/templates/tiny").json()
    assert made["source_media"]["type"] == "image" and made["vms"] == [], made
    assert page.get_by_label("Path of the disk image").input_value() == ""  # the form reset

    # three linked VMs of it, in one request
    page.locator("#nav-vms").click()
    page.wait_for_selector("#vms:not([hidden])")
    page.get_by_role("button", name="+ New VM").click()
    new = page.locator("#vm-new-dialog")
    new.wait_for(state="visible")
    new.locator('#vm-new-templates input[value="tiny"]').check()
    disks = new.locator("#vm-new-disks")
    disks.wait_for(state="visible")
    assert new.get_by_label("Linked to the template's image (instant)").is_checked()
    new.get_by_label("Name of the new VM").fill("web")
    new.get_by_label("How many").fill("3")
    page.screenshot(path=str(artifacts / "ui-images-new-vms.png"))
    new.get_by_role("button", name="Create").click()
    new.wait_for(state="hidden")

    card = wait_task_card(page, "New VM")
    assert card.locator(".task-target").inner_text() == "3 VMs (web-1 … web-3) from tiny"
    for name in ("web-1", "web-2", "web-3"):
        item(page, name).wait_for()
        wait_chip(page, name, "Shut off")
    assert {d["backing"] for n in ("web-1", "web-2", "web-3")
            for d in kimchi.get(f"/vms/{n}").json()["disks"] if d["device"] == "disk"} == \
        {str(image)}

    # the template says who stands on its image; it cannot be deleted meanwhile
    page.locator("#nav-templates").click()
    page.wait_for_selector("#templates:not([hidden])")
    page.wait_for_function(
        "() => document.querySelector('#tmpl-rows tr[data-name=\"tiny\"] .tmpl-used summary')"
        "?.textContent === 'Used by 3 VMs'")
    summary = row(page, "tiny").locator(".tmpl-used summary")
    assert summary.get_attribute("title") == "web-1\nweb-2\nweb-3"
    summary.focus()
    page.keyboard.press("Enter")  # expanded from the keyboard
    assert row(page, "tiny").locator(".tmpl-used-list li").all_inner_texts() == \
        ["web-1", "web-2", "web-3"]
    page.screenshot(path=str(artifacts / "ui-images-used-by.png"))
    row(page, "tiny").get_by_role("button", name="Delete tiny").click()
    confirm = page.locator("#confirm-dialog")
    confirm.wait_for(state="visible")
    assert "3 VMs (web-1, web-2, web-3)" in page.locator("#confirm-text").inner_text()
    confirm.get_by_role("button", name="Delete").click()
    refusal = page.locator("#confirm-error")
    refusal.wait_for()
    assert "KCHTMPL0022E" in refusal.inner_text() and "web-1" in refusal.inner_text()
    assert confirm.is_visible()
    confirm.get_by_role("button", name="Cancel").click()
    assert kimchi.get("/templates/tiny").status_code == 200
    assert page.evaluate("window.__noReload") is True


def test_cloud_init_of_a_template_and_of_new_vms(page: Any, idle_kimchi: Kimchi,
                                                 tmp_path: Path, artifacts: Path) -> None:
    kimchi = idle_kimchi
    image = make_boot_disk(tmp_path / "tiny.img")
    r = kimchi.post("/templates", {"name": "plain", "source_media": {"type": "image",
                                                                      "path": str(image)}})
    assert r.status_code == 201, r.text
    open_templates(page, kimchi)
    wait_templates(page, ["plain"])

    # the third source: a network boot, with nothing to choose
    page.get_by_role("radio", name="Network boot").check()
    assert page.get_by_label("Or the path of an ISO").is_hidden()
    assert page.get_by_label("Path of the disk image").is_hidden()
    page.get_by_label("Name (optional)").fill("pxe")
    page.get_by_role("button", name="Create template").click()
    wait_templates(page, ["plain", "pxe"])
    assert row(page, "pxe").locator(".tmpl-src").inner_text() == "network boot"

    # made with a cloud-init user, password and key: the password only said to be set
    image_template_from_the_form(page, image, "tiny", user="alice",
                                 shot=artifacts / "ui-images-template-form.png")
    wait_templates(page, ["plain", "pxe", "tiny"])
    tiny = row(page, "tiny")
    assert tiny.locator(".tmpl-ci").inner_text() == \
        "cloud-init: user alice · password set · 1 SSH key"
    ci = kimchi.get("/templates/tiny").json()["cloud_init"]
    assert ci == {"user": "alice", "password_set": True, "ssh_authorized_keys": [KEY]}, ci
    assert page.locator("#tmpl-ci-user").input_value() == ""  # the form emptied

    # edited in its dialog: what changed is sent, the password kept
    tiny.get_by_role("button", name="cloud-init of tiny").click()
    dialog = page.locator("#tmpl-ci-dialog")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "tmpl-edit-ci-hostname"
    assert dialog.get_by_label("User", exact=True).input_value() == "alice"
    assert dialog.get_by_label("SSH public keys").input_value() == KEY
    assert dialog.get_by_label("User's password").input_value() == ""
    assert dialog.get_by_label("User's password").get_attribute("placeholder") == "password set"
    assert "A password is set" in dialog.inner_text()
    dialog.get_by_label("Guest host name").fill("web.example.org")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    ci = kimchi.get("/templates/tiny").json()["cloud_init"]
    assert ci["hostname"] == "web.example.org" and ci["password_set"] is True, ci
    page.wait_for_function(
        "() => document.querySelector('#tmpl-rows tr[data-name=\"tiny\"] .tmpl-ci')"
        ".textContent.includes('host web.example.org')")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == \
        "cloud-init of tiny"

    # the New VM dialog: the template's settings shown under its own fields
    page.locator("#nav-vms").click()
    page.wait_for_selector("#vms:not([hidden])")
    page.get_by_role("button", name="+ New VM").click()
    new = page.locator("#vm-new-dialog")
    new.wait_for(state="visible")
    new.locator('#vm-new-templates input[value="tiny"]').check()
    new.locator("summary", has_text="cloud-init").click()
    assert new.get_by_label("User", exact=True).get_attribute("placeholder") == "alice"
    assert new.get_by_label("Guest host name").get_attribute("placeholder") == "web.example.org"
    assert new.get_by_label("User's password").get_attribute("placeholder") == "password set"
    new.locator("#vm-new-ci").screenshot(path=str(artifacts / "ui-images-new-vm-cloud-init.png"))
    new.get_by_label("How many").fill("501")
    new.get_by_role("button", name="Create").click()
    err = page.locator("#vm-new-error")
    err.wait_for()
    assert err.inner_text() == "How many is a whole number from 1 to 500."
    assert page.evaluate("document.activeElement.id") == "vm-new-count"
    # a password without any user (the other template has none): said before the server
    new.get_by_label("How many").fill("2")
    new.locator('#vm-new-templates input[value="plain"]').check()
    assert new.get_by_label("User", exact=True).get_attribute("placeholder") == "none"
    new.get_by_label("User's password").fill("pw")
    new.get_by_role("button", name="Create").click()
    page.wait_for_function(
        "() => document.getElementById('vm-new-error').textContent === "
        "'A cloud-init password needs a user.'")
    assert page.evaluate("document.activeElement.id") == "vm-new-ci-user"
    assert kimchi.get("/tasks?kind=vm.create").json() == []


def test_an_image_of_another_host(page: Any, multi: Kimchi, cluster3: Cluster) -> None:  # noqa: F811
    """With several hosts the form asks whose storage volume the image is; the New VM
    dialog then makes its VMs on that host."""
    kimchi = multi
    open_templates(page, kimchi)
    page.get_by_role("radio", name="Disk image").check()
    assert page.locator("#tmpl-image-host-field").is_hidden()  # one host: not asked
    add_host(kimchi, cluster3, "h2")
    r = kimchi.post("/hosts/h2/storagepools/default-pool/storagevolumes",
                    {"name": "base.qcow2", "capacity": 1 << 30, "format": "qcow2"})
    assert r.status_code == 201, r.text
    host = page.locator("#tmpl-form").get_by_label("Host", exact=True)
    host.wait_for()
    assert host.locator("option").all_inner_texts() == ["local", "h2"]
    assert host.input_value() == "local"
    host.select_option("h2")
    page.get_by_label("Path of the disk image").fill("/default-pool/base.qcow2")
    page.get_by_label("Name (optional)").fill("remote")
    page.get_by_role("button", name="Create template").click()
    wait_templates(page, ["remote"])
    assert row(page, "remote").locator(".tmpl-image-text").inner_text() == \
        "Disk image · qcow2 · 1.0 GiB · on h2"
    assert kimchi.get("/templates/remote").json()["source_media"]["host"] == "h2"
    # (kimchid makes the pool "default" on its own host only: h2's is "default-pool")
    r = kimchi.http.put(kimchi.url + "/templates/remote", timeout=10, json={
        "disks": [{"index": 0, "size": 1, "pool": {"name": "default-pool"}}]})
    assert r.status_code == 200, r.text

    page.locator("#nav-vms").click()
    page.wait_for_selector("#vms:not([hidden])")
    page.get_by_role("button", name="+ New VM").click()
    new = page.locator("#vm-new-dialog")
    new.wait_for(state="visible")
    new.locator('#vm-new-templates input[value="remote"]').check()
    assert new.get_by_label("Host", exact=True).input_value() == "h2"
    assert new.locator("#vm-new-disks").is_visible()
    new.get_by_label("Name of the new VM").fill("far")
    new.get_by_role("button", name="Create").click()
    new.wait_for(state="hidden")
    wait_task_card(page, "New VM")
    item(page, "far").wait_for()
    assert item(page, "far").locator(".vm-host").inner_text() == "on h2"


# -- on a real libvirtd ----------------------------------------------------------------------


def test_make_template_of_a_shut_off_vm(page: Any, kimchi_factory: Any, redis_db: RedisServer,
                                        qemu_pool: Any, artifacts: Path, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POST itself
    kimchi = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    pool, tag = qemu_pool, qemu_pool.tag
    base = make_boot_disk(pool.folder / f"img-{tag}.img")
    pool.refresh(0)
    wait_for(lambda: kimchi.get(f"/storagepools/{pool.name()}").status_code == 200,
             timeout=30, what="kimchid connected to libvirtd")
    r = kimchi.post("/templates", {
        "name": f"img-{tag}", "source_media": {"type": "image", "path": str(base)},
        "networks": [], "memory": {"current": 128, "maxmemory": 128},
        "disks": [{"index": 0, "size": 0.05, "pool": {"name": pool.name()}}]})
    assert r.status_code == 201, r.text
    vm = f"full-{tag}"
    task = kimchi.post("/vms", {"template": f"img-{tag}", "name": vm, "disk_mode": "full"}).json()
    assert kimchi.wait_task(task["id"], timeout=60)["status"] == "finished"

    open_vms(page, kimchi)
    item(page, vm).wait_for()
    wait_chip(page, vm, "Shut off")
    assert "Make template" in actions(page, vm)
    item(page, vm).get_by_role("button", name=f"Make a template of {vm}").click()
    dialog = page.locator("#vm-mktmpl-dialog")
    dialog.wait_for(state="visible")
    name = page.get_by_label("Name of the template")
    assert name.input_value() == f"{vm}-template"
    assert page.evaluate("document.activeElement.id") == "vm-mktmpl-name"
    # a name taken: the server's reason in the dialog, which stays open
    name.fill(f"img-{tag}")
    dialog.get_by_role("button", name="Make template").click()
    err = page.locator("#vm-mktmpl-error")
    err.wait_for()
    assert "KCHTMPL0001E" in err.inner_text(), err.inner_text()
    assert name.get_attribute("aria-invalid") == "true"
    name.fill(f"from-{tag}")
    assert err.is_hidden()  # typing clears it
    page.screenshot(path=str(artifacts / "ui-images-make-template.png"))
    dialog.get_by_role("button", name="Make template").click()
    dialog.wait_for(state="hidden")

    card = wait_task_card(page, "Make template")
    assert card.locator(".task-target").inner_text() == f"from-{tag}, from {vm}"
    wait_chip(page, vm, "Shut off")
    assert item(page, vm).get_by_role("button", name=f"Start {vm}").is_enabled()

    page.locator("#nav-templates").click()
    page.wait_for_selector("#templates:not([hidden])")
    wait_templates(page, [f"img-{tag}", f"from-{tag}"])
    made = row(page, f"from-{tag}")
    assert made.locator(".tmpl-image-text").inner_text().startswith(
        "Disk image · qcow2 · "), made.locator(".tmpl-image-text").inner_text()
    assert "made from a VM" in made.locator(".tmpl-image-text").inner_text()
    page.wait_for_function(
        "(n) => document.querySelector(`#tmpl-rows tr[data-name=\"${n}\"] .tmpl-used summary`)"
        "?.textContent === 'Used by 1 VM'", arg=f"from-{tag}")
    made.locator(".tmpl-used summary").click()
    assert made.locator(".tmpl-used-list li").all_inner_texts() == [vm]
    assert page.evaluate("window.__noReload") is True
