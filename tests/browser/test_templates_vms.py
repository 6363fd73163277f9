"""Templates and virtual machines in a real Chromium, against the real daemon and workers.

As in test_ui.py: drive the page as a user would, assert what the user sees. The daemon
runs on libvirt's test driver (test:///default), whose one domain "test" is running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser


def open_page(page: Any, kimchi: Kimchi, where: str = "") -> None:
    page.goto(kimchi.url + "/" + where)
    page.wait_for_selector('#conn[data-state="live"]')
    page.evaluate("() => { window.__noReload = true; }")


def template_rows(page: Any) -> dict[str, str]:
    """Template rows as {name: OS text}."""
    cells = page.eval_on_selector_all(
        "#tmpl-rows tr", "rs => rs.map(r => [r.dataset.name, r.cells[1].innerText])")
    return {name: " ".join(os_.split()) for name, os_ in cells}


def wait_templates(page: Any, names: list[str], timeout: float = 15_000) -> None:
    try:
        page.wait_for_function(
            "names => JSON.stringify([...document.querySelectorAll('#tmpl-rows tr')]"
            ".map(r => r.dataset.name).sort()) === JSON.stringify(names)",
            arg=sorted(names), timeout=timeout)
    except Exception:
        shown = list(template_rows(page))
        error = page.locator("#tmpl-error").inner_text()
        raise AssertionError(f"wanted templates {sorted(names)}, shown {shown}; "
                             f"form error: {error!r}") from None


def row(page: Any, name: str) -> Any:
    return page.locator(f'#tmpl-rows tr[data-name="{name}"]')


def scan(kimchi: Kimchi, path: Path) -> None:
    task = kimchi.post("/isos/scan", {"path": str(path)}).json()
    assert kimchi.wait_task(task["id"])["status"] == "finished"


def test_template_lifecycle_from_the_library(page: Any, kimchi: Kimchi, iso_tree: Path,
                                             artifacts: Path, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused rename itself
    scan(kimchi, iso_tree)
    open_page(page, kimchi)
    page.wait_for_function("() => document.querySelectorAll('#iso-rows tr').length === 4")

    # the nav entries are live links now
    assert page.locator("#nav-templates").get_attribute("href") == "#/templates"
    assert page.locator("#nav-vms").get_attribute("href") == "#/vms"

    # "Create template" on a library row: the form opens, pre-filled with that ISO
    fedora = str(iso_tree / "fedora" / "Fedora-39.iso")
    page.locator("#iso-rows tr", has_text="Fedora-39.iso").get_by_role(
        "button", name="Create a template from Fedora-39.iso").click()
    page.wait_for_selector("#templates:not([hidden])")
    assert page.locator("#isos").is_hidden()
    assert page.url.endswith("#/templates")
    assert page.locator("#nav-templates").get_attribute("aria-current") == "page"
    assert page.get_by_label("ISO from the library").input_value() == fedora
    assert page.get_by_label("Or the path of an ISO").input_value() == fedora
    options = page.locator("#tmpl-iso option").all_inner_texts()
    assert "Fedora-39.iso — fedora 39" in options, options
    page.get_by_label("Memory (MiB)").fill("2048")
    page.get_by_label("vCPUs").fill("2")
    page.get_by_role("button", name="Create template").click()

    wait_templates(page, ["fedora39"])
    assert template_rows(page) == {"fedora39": "fedora 39"}
    cells = row(page, "fedora39").locator("td").all_inner_texts()
    assert cells[2] == "2 GiB" and cells[3] == "2", cells
    assert row(page, "fedora39").locator(".tmpl-src").inner_text() == fedora
    assert page.locator("#tmpl-error").is_hidden()
    assert page.get_by_label("Or the path of an ISO").input_value() == ""  # form reset
    assert kimchi.get("/templates/fedora39").json()["memory"]["current"] == 2048

    # clone
    row(page, "fedora39").get_by_role("button", name="Clone fedora39").click()
    page.wait_for_function("() => document.querySelectorAll('#tmpl-rows tr').length === 2")
    names = list(template_rows(page))
    clone = next(n for n in names if n != "fedora39")
    assert clone.startswith("fedora39-clone"), names
    assert template_rows(page)[clone] == "fedora 39"

    # rename the clone, in place
    row(page, clone).get_by_role("button", name=f"Rename {clone}").click()
    field = page.get_by_label(f"New name for {clone}")
    assert field.input_value() == clone
    field.fill("workstation")
    field.press("Enter")
    wait_templates(page, ["fedora39", "workstation"])
    assert kimchi.get(f"/templates/{clone}").status_code == 404
    assert kimchi.get("/templates/workstation").status_code == 200

    # a bad rename says why, inline, and keeps the field
    row(page, "workstation").get_by_role("button", name="Rename workstation").click()
    field = page.get_by_label("New name for workstation")
    field.fill("fedora39")
    field.press("Enter")
    err = row(page, "workstation").locator(".row-error")
    err.wait_for()
    assert "already exists" in err.inner_text()
    row(page, "workstation").get_by_role("button", name="Cancel").click()
    page.wait_for_selector('#tmpl-rows tr[data-name="workstation"] .rename-form',
                           state="detached")

    # delete behind a real dialog: cancelling keeps it, confirming deletes it
    row(page, "workstation").get_by_role("button", name="Delete workstation").click()
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.getElementById('confirm-dialog').open") is True
    assert "workstation" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    assert kimchi.get("/templates/workstation").status_code == 200
    page.screenshot(path=str(artifacts / "ui-templates.png"))

    row(page, "workstation").get_by_role("button", name="Delete workstation").click()
    dialog.wait_for(state="visible")
    page.screenshot(path=str(artifacts / "ui-templates-delete.png"))
    dialog.get_by_role("button", name="Delete").click()
    dialog.wait_for(state="hidden")
    wait_templates(page, ["fedora39"])
    assert kimchi.get("/templates/workstation").status_code == 404
    assert page.evaluate("window.__noReload") is True


def test_typed_path_and_bad_path(page: Any, kimchi: Kimchi, tmp_path: Path,
                                 problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused POSTs itself
    iso = tmp_path / "media" / "Fedora-39.iso"
    make_iso(iso, "Fedora-WS-Live-39-1-5")
    open_page(page, kimchi, "#/templates")
    page.wait_for_selector("#templates:not([hidden])")
    assert page.locator("#tmpl-empty").is_visible()

    # not an ISO: the daemon's reason, inline, next to the form
    page.get_by_label("Or the path of an ISO").fill(str(tmp_path / "nothing-here.iso"))
    page.get_by_role("button", name="Create template").click()
    err = page.locator("#tmpl-error")
    err.wait_for()
    text = err.inner_text()
    assert "KCHTMPL0003E" in text and "nothing-here.iso" in text, text
    assert page.get_by_label("Or the path of an ISO").get_attribute("aria-invalid") == "true"

    # a relative path
    page.get_by_label("Or the path of an ISO").fill("relative.iso")
    page.get_by_role("button", name="Create template").click()
    page.wait_for_function(
        "() => document.getElementById('tmpl-error').textContent.includes('KCHTMPL0004E')")

    # typed path and a name: made, and the error goes away
    page.get_by_label("Or the path of an ISO").fill(str(iso))
    assert page.locator("#tmpl-error").is_hidden()  # typing clears it
    page.get_by_label("Name (optional)").fill("my-fedora")
    page.get_by_role("button", name="Create template").click()
    wait_templates(page, ["my-fedora"])
    assert template_rows(page) == {"my-fedora": "fedora 39"}
    assert page.locator("#tmpl-error").is_hidden()


def test_template_file_dropped_by_hand_appears_live(page: Any, kimchi: Kimchi,
                                                    tmp_path: Path, artifacts: Path) -> None:
    iso = tmp_path / "Fedora-39.iso"
    make_iso(iso, "Fedora-WS-Live-39-1-5")
    made = kimchi.post("/templates", {"name": "base",
                                      "source_media": {"type": "disk", "path": str(iso)}})
    assert made.status_code == 201, made.text
    open_page(page, kimchi, "#/templates")
    wait_templates(page, ["base"])

    # a copy written by hand, pointing at an ISO that is not there: listed, flagged invalid
    data = {k: v for k, v in made.json().items() if k not in ("name", "invalid")}
    data["source_media"] = {"type": "disk", "path": str(tmp_path / "gone.iso")}
    data["networks"] = ["no-such-net"]
    folder = kimchi.dir / "objects" / "templates"
    tmp = folder / ".handmade.tmp"
    tmp.write_text(json.dumps(data))
    tmp.rename(folder / "handmade.json")

    wait_templates(page, ["base", "handmade"], timeout=20_000)
    hand = row(page, "handmade")
    chip = hand.locator(".chip-invalid")
    page.wait_for_function(
        "() => { const c = document.querySelector('#tmpl-rows tr[data-name=\"handmade\"] "
        ".chip-invalid'); return c && c.textContent.includes('no-such-net'); }",
        timeout=20_000)
    assert "row-invalid" in (hand.get_attribute("class") or "")
    assert "ISO missing" in chip.inner_text()
    assert "gone.iso" in (chip.get_attribute("title") or "")
    assert "network no-such-net missing" in chip.inner_text()
    assert "no-such-net" not in row(page, "base").inner_text()
    page.screenshot(path=str(artifacts / "ui-templates-invalid.png"))

    # removed by hand: gone from the page too
    (folder / "handmade.json").unlink()
    wait_templates(page, ["base"], timeout=20_000)
    assert page.evaluate("window.__noReload") is True


def test_vms_page_lists_the_test_domain(page: Any, kimchi: Kimchi, artifacts: Path) -> None:
    open_page(page, kimchi)
    page.locator("#nav-vms").click()
    page.wait_for_selector("#vms:not([hidden])")
    assert page.get_by_role("heading", name="Virtual machines").is_visible()
    vm = page.locator('#vm-list > li[data-name="test"]')
    vm.wait_for()
    assert vm.locator(".state").inner_text() == "Running"
    assert "state-running" in (vm.locator(".state").get_attribute("class") or "")
    listed = kimchi.get("/vms/test").json()
    assert vm.locator(".vm-name").inner_text() == "test"
    assert vm.locator(".vm-cpus").inner_text() == f"{listed['cpus']} vCPUs"
    assert vm.locator(".vm-uuid").inner_text() == listed["uuid"]
    page.screenshot(path=str(artifacts / "ui-vms.png"))

    # back to the library through the nav: the default page
    page.locator("#nav-isos").click()
    page.wait_for_selector("#isos:not([hidden])")
    assert page.locator("#vms").is_hidden()
