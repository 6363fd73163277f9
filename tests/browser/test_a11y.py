"""Every page of the UI, and every dialog of the VMs page, checked by axe-core in a real
Chromium against the real daemon: a test fails on any violation axe rates serious or
critical, naming the rule, what it asks for and the elements that break it.

axe-core is the version ./kimchi.sh test pins and installs (.cache/node, the
``axe_source`` fixture). It is injected with ``page.evaluate``, which the page's CSP
(``script-src 'self'``) does not apply to, as it would to a ``<script>`` tag.

One daemon (libvirt's test driver, one worker for the ISO scan) and one signed-in page
serve every check: the daemon is given something to list first (an ISO, a template, a
volume, a token), so that the rows and their buttons are checked too. Every violation,
whatever its impact, is also written to ``artifacts/a11y-<page>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser

FAILING = ("serious", "critical")

# axe over the document, or over one element (a dialog): every violation, with its nodes.
AXE_RUN = """async (within) => {
  const context = within ? { include: [within] } : document;
  const result = await axe.run(context, { resultTypes: ['violations'] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target.map(String).join(' '), impact: n.impact,
                                 html: n.html.slice(0, 200), summary: n.failureSummary })),
  }));
}"""


@dataclass
class Site:
    kimchi: Kimchi
    page: Any  # signed in as the admin, shared by the checks
    axe: str
    artifacts: Path
    logged: list[str] = field(default_factory=list)  # the page's console errors


@pytest.fixture(scope="module")
def site(chromium: Any, redis_server: RedisServer, pam_users: Any, axe_source: str,
         artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    redis_server.emptied()
    work = tmp_path_factory.mktemp("a11y")
    admin = pam_users.admin
    kimchi = Kimchi(work / "kimchi", redis_url=redis_server.url, workers=1,
                    auth=(admin.name, admin.password))
    context = None
    try:
        kimchi.start()
        fill(kimchi, work)
        context = chromium.new_context(viewport={"width": 1280, "height": 800},
                                       device_scale_factor=1)
        context.add_cookies([{"name": "kimchi_session", "url": kimchi.url,
                              "value": kimchi.login_cookie()}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        site = Site(kimchi, page, axe_source, artifacts)
        page.on("console", lambda m: site.logged.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: site.logged.append(f"exception: {e}"))
        page.goto(kimchi.url + "/#/isos")
        try:
            page.wait_for_selector('#conn[data-state="live"]')
        except Exception:
            raise AssertionError(f"the UI did not come up; it logged {site.logged}") from None
        yield site
    finally:
        if context is not None:
            context.close()
        kimchi.stop()


def fill(kimchi: Kimchi, work: Path) -> None:
    """Something in each listing: an ISO in the library, a template (and one that cannot
    be used: its ISO went, which greys it out), a volume, a token."""
    iso = make_iso(work / "isos" / "Fedora-39.iso", "Fedora-WS-Live-39-1-5")
    task = kimchi.post("/isos/scan", {"path": str(iso.parent)}).json()
    assert kimchi.wait_task(task["id"])["status"] == "finished"
    gone = make_iso(work / "gone.iso", "Fedora-WS-Live-39-1-5")
    for name, path in (("f39", iso), ("gone", gone)):
        made = kimchi.post("/templates", {"name": name,
                                          "source_media": {"type": "disk", "path": str(path)}})
        assert made.status_code == 201, made.text
    gone.unlink()
    made = kimchi.post("/storagepools/default-pool/storagevolumes",
                       {"name": "data.qcow2", "capacity": 1024 ** 3, "format": "qcow2"})
    assert made.status_code == 201, made.text
    made = kimchi.post("/tokens", {"name": "backup script"})
    assert made.status_code == 201, made.text


def axe(site: Site, page: Any, name: str, within: str = "") -> None:
    """Run axe in ``page`` (the whole document, or the element ``within``); fail on what
    is serious or critical, listing each rule and its first elements."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(site.axe + "\n;void 0")
    violations = page.evaluate(AXE_RUN, within or None)
    (site.artifacts / f"a11y-{name}.json").write_text(json.dumps(violations, indent=1))
    bad = [v for v in violations if v["impact"] in FAILING]
    if bad:
        lines = [f"{name}: {len(bad)} serious or critical accessibility violations (axe-core):"]
        for v in bad:
            lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{len(v['nodes'])} elements]")
            for n in v["nodes"][:5]:
                lines.append(f"    {n['target']}")
        pytest.fail("\n".join(lines), pytrace=False)


def show(site: Site, where: str, ready: str) -> Any:
    """Open the page ``#/where`` in the shared page; wait for its section and ``ready``."""
    page = site.page
    page.goto(f"{site.kimchi.url}/#/{where}")
    page.wait_for_selector(f"#{where}:not([hidden])")
    page.wait_for_selector(ready)
    return page


# -- the pages -----------------------------------------------------------------------------


def test_login_page(chromium: Any, site: Site) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})  # no session
    try:
        page = context.new_page()
        page.goto(site.kimchi.url + "/")
        page.wait_for_selector("#login-form:visible")
        axe(site, page, "login")
    finally:
        context.close()


PAGES: dict[str, str] = {
    # page: what shows once its listing is in
    "isos": "#iso-rows tr",
    "templates": '#tmpl-rows tr[data-name="gone"].row-invalid',
    "vms": '#vm-list > li[data-name="test"]',
    "networks": "#net-rows tr",
    "host": "#host-info dt",
    "hosts": '#host-rows tr[data-name="local"]',
    "reports": "#report-count:has-text('report')",
    "tokens": "#token-rows tr",
}


@pytest.mark.parametrize("where", list(PAGES))
def test_page(site: Site, where: str) -> None:
    page = show(site, where, PAGES[where])
    axe(site, page, where)


def test_storage_page_with_the_volumes_of_a_pool(site: Site) -> None:
    page = show(site, "storage", '#pool-rows > tr[data-name="default-pool"]')
    page.locator('#pool-rows > tr[data-name="default-pool"]').get_by_role(
        "button", name="Volumes of default-pool").click()
    page.wait_for_selector('#volume-rows > tr[data-name="data.qcow2"]')
    axe(site, page, "storage")


# -- the dialogs of the VMs page -----------------------------------------------------------


def vm(page: Any) -> Any:
    return page.locator('#vm-list > li[data-name="test"]')


def state_is(site: Site, want: str) -> Any:
    """The VMs page, with the VM "test" in the state ``want`` (running or shutoff)."""
    kimchi = site.kimchi
    now = kimchi.get("/vms/test").json()["state"]
    if now != want:
        r = kimchi.post("/vms/test/" + ("start" if want == "running" else "poweroff"))
        assert r.status_code == 200, r.text
    page = show(site, "vms", f'#vm-list > li[data-name="test"][data-state="{want}"]')
    page.wait_for_selector('#vm-list > li[data-name="test"][aria-busy="false"]')
    return page


def by_button(label: str, state: str = "running") -> Callable[[Site], Any]:
    def open_it(site: Site) -> Any:
        page = state_is(site, state)
        vm(page).get_by_role("button", name=label).click()
        return page
    return open_it


def new_vm(site: Site) -> Any:
    page = state_is(site, "running")
    page.get_by_role("button", name="+ New VM").click()
    page.wait_for_selector('#vm-new-templates input[value="gone"]:disabled')
    page.locator("#vm-new-ci > summary").click()  # its cloud-init fields checked too
    return page


def snapshots(site: Site) -> Any:
    page = by_button("Snapshots of test")(site)
    page.wait_for_selector("#snap-empty:visible, #snap-list > li")
    return page


def devices(site: Site) -> Any:
    page = by_button("Devices of test")(site)
    page.wait_for_selector('#dev-storages > li[data-dev="vda"]')
    return page


DIALOGS: dict[str, tuple[str, Callable[[Site], Any]]] = {
    "new-vm": ("#vm-new-dialog", new_vm),
    "access": ("#vm-access-dialog", by_button("Access to test")),
    "snapshots": ("#snap-dialog", snapshots),
    "devices": ("#dev-dialog", devices),
    "delete": ("#confirm-dialog", by_button("Delete test")),
    "edit": ("#vm-edit-dialog", by_button("Edit test", "shutoff")),
    "clone": ("#vm-clone-dialog", by_button("Clone test", "shutoff")),
    "make-template": ("#vm-mktmpl-dialog", by_button("Make a template of test", "shutoff")),
}


@pytest.mark.parametrize("name", list(DIALOGS))
def test_vm_dialog(site: Site, name: str) -> None:
    dialog, open_it = DIALOGS[name]
    page = open_it(site)
    try:
        page.wait_for_selector(f"{dialog}[open]")
        page.wait_for_timeout(300)  # whatever the dialog asks the server for is in
        axe(site, page, f"dialog-{name}", within=dialog)
    finally:
        # closed without doing anything: Escape, as a user would
        if page.evaluate(f"() => document.querySelector('{dialog}').open"):
            page.keyboard.press("Escape")
        page.wait_for_selector(f"{dialog}:not([open])", state="attached")


def test_template_form_for_a_disk_image_and_the_cloud_init_dialog(site: Site) -> None:
    page = show(site, "templates", '#tmpl-rows tr[data-name="f39"]')
    page.get_by_role("radio", name="Disk image").check()
    page.locator("#tmpl-ci > summary").click()
    try:
        axe(site, page, "templates-image-form", within="#tmpl-form")
    finally:
        page.locator("#tmpl-ci > summary").click()
        page.get_by_role("radio", name="ISO (install)").check()
    page.locator('#tmpl-rows tr[data-name="f39"]').get_by_role(
        "button", name="cloud-init of f39").click()
    try:
        page.wait_for_selector("#tmpl-ci-dialog[open]")
        axe(site, page, "dialog-template-cloud-init", within="#tmpl-ci-dialog")
    finally:
        page.keyboard.press("Escape")
        page.wait_for_selector("#tmpl-ci-dialog:not([open])", state="attached")


def test_the_page_logged_no_error(site: Site) -> None:
    """Last: the checks above made the page log nothing (a CSP refusal of axe, say)."""
    assert site.logged == [], site.logged
