"""The UI with the keyboard alone, in a real Chromium against the real daemon (libvirt's
test driver, whose one domain "test" runs): a VM started by Tab and Enter, the New VM
dialog keeping the focus while it is open and giving it back when it closes, and a
visible focus ring on whatever Tab reaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser

# What has the focus: enough to find it again and to say which it was.
FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const s = getComputedStyle(e);
  return {
    id: e.id, tag: e.tagName.toLowerCase(),
    name: (e.getAttribute('aria-label') || e.textContent || e.value || '').trim().replace(/\\s+/g, ' ').slice(0, 50),
    dialog: e.closest('dialog') ? e.closest('dialog').id : '',
    focusVisible: e.matches(':focus-visible'),
    outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
    shadow: s.boxShadow,
  };
}"""


def focused(page: Any) -> dict[str, Any] | None:
    return page.evaluate(FOCUSED)


def describe(f: dict[str, Any] | None) -> str:
    if f is None:
        return "(nothing: the page)"
    return f"{f['tag']}#{f['id']}" if f["id"] else f"{f['tag']} {f['name']!r}"


def tab_to(page: Any, wanted: Any, most: int = 80) -> list[dict[str, Any] | None]:
    """Press Tab until ``wanted(focused)`` holds; the elements passed on the way."""
    path: list[dict[str, Any] | None] = []
    for _ in range(most):
        page.keyboard.press("Tab")
        f = focused(page)
        path.append(f)
        if f is not None and wanted(f):
            return path
    pytest.fail(f"{most} presses of Tab never reached it; focus went to: "
                + ", ".join(describe(f) for f in path), pytrace=False)


def open_vms(page: Any, kimchi: Kimchi, state: str) -> None:
    page.goto(kimchi.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector(f'#vm-list > li[data-name="test"][data-state="{state}"]')
    page.wait_for_selector('#vm-list > li[data-name="test"][aria-busy="false"]')


def test_tab_reaches_start_and_enter_starts_the_vm(page: Any, idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    assert kimchi.post("/vms/test/poweroff").status_code == 200
    open_vms(page, kimchi, "shutoff")

    page.keyboard.press("Tab")
    first = focused(page)
    assert first is not None and first["id"] == "skip-link", \
        f"the first Tab goes to {describe(first)}, not to the skip link"
    tab_to(page, lambda f: f["name"] == "Start test")
    page.keyboard.press("Enter")
    page.wait_for_selector('#vm-list > li[data-name="test"][data-state="running"]')
    assert page.locator('#vm-list > li[data-name="test"] .state').inner_text() == "Running"
    assert kimchi.get("/vms/test").json()["state"] == "running"
    # the pressed button went: the focus stays in the row, on one of the new buttons
    now = focused(page)
    assert now is not None and now["name"].endswith(" test"), describe(now)


def test_the_new_vm_dialog_keeps_the_focus_and_gives_it_back(
        page: Any, idle_kimchi: Kimchi, tmp_path: Path) -> None:
    kimchi = idle_kimchi
    iso = make_iso(tmp_path / "f39.iso", "Fedora-WS-Live-39-1-5")
    made = kimchi.post("/templates", {"name": "f39",
                                      "source_media": {"type": "disk", "path": str(iso)}})
    assert made.status_code == 201, made.text
    open_vms(page, kimchi, "running")

    tab_to(page, lambda f: f["id"] == "vm-new")
    page.keyboard.press("Enter")
    page.wait_for_selector("#vm-new-dialog[open]")
    page.wait_for_selector('#vm-new-templates input[value="f39"]')
    start = focused(page)
    assert start is not None and start["dialog"] == "vm-new-dialog", \
        f"the dialog opened with the focus on {describe(start)}"

    for key in ["Tab"] * 20 + ["Shift+Tab"] * 20:
        page.keyboard.press(key)
        f = focused(page)
        assert f is not None and f["dialog"] == "vm-new-dialog", \
            f"{key} took the focus out of the open dialog, to {describe(f)}"

    page.keyboard.press("Escape")
    page.wait_for_selector("#vm-new-dialog:not([open])", state="attached")
    back = focused(page)
    assert back is not None and back["id"] == "vm-new", \
        f"the dialog closed, the focus went to {describe(back)}, not back to New VM"


# Reached with Tab on the VMs page, each must show where the focus is: a nav link, a
# button and an input (by id), besides every other control on the way.
SAMPLE = {"nav-vms": "a nav link", "vm-new": "a button", "vm-filter": "an input"}


def test_what_tab_reaches_shows_a_focus_ring(page: Any, idle_kimchi: Kimchi) -> None:
    open_vms(page, idle_kimchi, "running")
    seen: list[tuple[int, dict[str, Any]]] = []
    handles: list[Any] = []
    for i in range(60):
        page.keyboard.press("Tab")
        f = focused(page)
        if f is None or (seen and f == seen[0][1]):
            break  # round the page, back at the start
        seen.append((i, f))
        handles.append(page.evaluate_handle("() => document.activeElement"))
    reached = {f["id"] for _, f in seen}
    missing = [f"{what} (#{id_})" for id_, what in SAMPLE.items() if id_ not in reached]
    assert not missing, f"Tab never reached {missing}: " + ", ".join(describe(f) for _, f in seen)

    page.evaluate("() => document.getElementById('main').focus()")  # away from them all
    bare = []
    for (_, f), handle in zip(seen, handles, strict=True):
        if not f["focusVisible"]:
            bare.append(f"{describe(f)}: not :focus-visible though reached with Tab")
        elif f["outline"] != "none" and f["outlineWidth"] > 0:
            continue
        elif f["shadow"] != "none" and f["shadow"] != handle.evaluate(
                "e => getComputedStyle(e).boxShadow"):
            continue  # a ring drawn by a shadow, which goes with the focus
        else:
            bare.append(f"{describe(f)}: no outline, no shadow of its own when focused")
    assert not bare, "no visible focus indicator on:\n" + "\n".join(bare)
