"""Who may use a VM, and API tokens, managed from the UI in a real Chromium.

The daemon runs on libvirt's test driver (test:///default), whose one domain "test" is
running. An admin assigns it to the test user through the Access dialog and issues and
revokes API tokens on the "API tokens" page; each test checks what the page shows and,
through the REST API with the user's own credentials, that the server agrees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser



def wait_live(page: Any) -> None:
    page.wait_for_selector('#conn[data-state="live"]')


def vm_item(page: Any, name: str) -> Any:
    return page.locator(f'#vm-list > li[data-name="{name}"]')


def access_text(page: Any, name: str) -> str:
    return vm_item(page, name).locator(".vm-access-text").inner_text()


def wait_access_text(page: Any, name: str, text: str) -> None:
    try:
        page.wait_for_function(
            "([name, text]) => { const t = document.querySelector("
            "`#vm-list > li[data-name=\"${name}\"] .vm-access-text`); "
            "return !!t && t.textContent === text; }", arg=[name, text])
    except Exception:
        raise AssertionError(f"{name}: wanted {text!r}, the row says "
                             f"{access_text(page, name)!r}") from None


def bearer(kimchi: Kimchi, secret: str) -> requests.Response:
    return requests.get(kimchi.url + "/session", timeout=20,
                        headers={"Authorization": "Bearer " + secret})


def test_admin_gives_a_running_vm_to_a_user_through_the_access_dialog(
        page: Any, idle_kimchi: Kimchi, pam_users: Any, problems: Any, artifacts: Path) -> None:
    kimchi = idle_kimchi
    admin, user = pam_users.admin, pam_users.user
    problems.allowed.append("status of 400")  # Chromium logs the refused PUT itself
    page.goto(kimchi.url + "/#/vms")
    wait_live(page)
    vm = vm_item(page, "test")
    vm.wait_for()
    assert vm.locator(".state").inner_text() == "Running"
    assert access_text(page, "test") == "Administrators only"
    # not one of the power actions: those stay as they were
    assert "Access" not in vm.locator(".vm-actions button:visible").all_inner_texts()

    vm.get_by_role("button", name="Access to test").click()
    dialog = page.locator("#vm-access-dialog")
    assert dialog.is_visible()
    assert page.evaluate("document.activeElement.id") == "vm-access-users"
    page.locator("#vm-access-users").fill(user.name)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    wait_access_text(page, "test", f"User: {user.name}")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Access to test"
    page.screenshot(path=str(artifacts / "ui-vm-access.png"))

    # the server agrees, and the user now has the VM
    got = requests.get(kimchi.url + "/vms/test", auth=(admin.name, admin.password), timeout=20)
    assert got.json()["users"] == [user.name]
    theirs = requests.get(kimchi.url + "/vms", auth=(user.name, user.password), timeout=20)
    assert theirs.status_code == 200, theirs.text
    assert [v["name"] for v in theirs.json()] == ["test"]

    # a bad name: the server's reason is shown, the dialog stays open, nothing changes
    vm.get_by_role("button", name="Access to test").click()
    assert page.locator("#vm-access-users").input_value() == user.name
    page.locator("#vm-access-groups").fill("no/slash")
    dialog.get_by_role("button", name="Save").click()
    error = page.locator("#vm-access-error")
    error.wait_for()
    refused = requests.put(kimchi.url + "/vms/test", json={"users": [user.name], "groups": [
        "no/slash"]}, auth=(admin.name, admin.password), timeout=20)
    assert refused.status_code == 400
    assert refused.json()["reason"] in error.inner_text()
    assert dialog.is_visible()
    assert page.locator("#vm-access-groups").get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(artifacts / "ui-vm-access-error.png"))
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    assert requests.get(kimchi.url + "/vms/test", auth=(admin.name, admin.password),
                        timeout=20).json()["groups"] == []

    # a change made elsewhere arrives live (vm.updated)
    r = requests.put(kimchi.url + "/vms/test", json={"groups": ["ops"]},
                     auth=(admin.name, admin.password), timeout=20)
    assert r.status_code == 200, r.text
    wait_access_text(page, "test", f"User: {user.name} · Group: ops")


def test_tokens_are_issued_shown_once_listed_and_revoked(
        page: Any, idle_kimchi: Kimchi, pam_users: Any, problems: Any, artifacts: Path) -> None:
    kimchi = idle_kimchi
    user = pam_users.user
    problems.allowed.append("status of 400")  # the refused POST: Chromium logs it itself
    page.goto(kimchi.url + "/#/isos")
    wait_live(page)
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_selector("#tokens:not([hidden])")
    assert page.title() == "API tokens · kimchi"
    page.wait_for_function("() => document.querySelector('#token-count').textContent === '0 tokens'")

    # an unknown user: the server's reason
    page.locator("#token-name").fill("nobody's")
    page.locator("#token-user").fill("no-such-user-here")
    page.get_by_role("button", name="Issue token").click()
    page.wait_for_selector("#token-error:visible")
    assert "KCHAUTH0012E" in page.locator("#token-error").inner_text()
    assert page.locator("#token-user").get_attribute("aria-invalid") == "true"
    assert page.locator("#token-secret").is_hidden()

    # a token for the user, for a day
    page.locator("#token-name").fill("backup script")
    page.locator("#token-user").fill(user.name)
    page.locator("#token-expiry").select_option(label="in 1 day")
    page.get_by_role("button", name="Issue token").click()
    secret_card = page.locator("#token-secret")
    secret_card.wait_for()
    assert page.locator("#token-error").is_hidden()
    secret = page.locator("#token-value").input_value()
    assert secret.startswith("kch_"), secret
    assert "will not be shown again" in secret_card.inner_text()
    page.get_by_role("button", name="Copy").click()
    page.wait_for_function("() => document.querySelector('#token-copied').textContent !== ''")
    page.screenshot(path=str(artifacts / "ui-token-secret.png"))

    who = bearer(kimchi, secret)
    assert who.status_code == 200, who.text
    assert who.json()["username"] == user.name

    # listed, without the secret
    row = page.locator("#token-rows tr", has_text="backup script")
    row.wait_for()
    assert user.name in row.inner_text()
    assert "Never" not in row.inner_text()
    listed = kimchi.get("/tokens").json()
    assert [(t["name"], t["username"]) for t in listed] == [("backup script", user.name)]
    assert listed[0]["expires"] is not None

    # dismissed, and after a reload, the secret is nowhere in the page
    page.get_by_role("button", name="Done").click()
    assert secret_card.is_hidden()
    assert secret not in page.content()
    page.reload()
    wait_live(page)
    row.wait_for()
    assert secret_card.is_hidden()
    assert secret not in page.content()

    # revoked behind a confirmation: the bearer is refused at once
    row.get_by_role("button", name=f"Revoke token backup script of {user.name}").click()
    confirm = page.locator("#confirm-dialog")
    assert "stops working at once" in confirm.inner_text()
    confirm.get_by_role("button", name="Revoke").click()
    confirm.wait_for(state="hidden")
    row.wait_for(state="detached")
    assert page.locator("#token-count").inner_text() == "0 tokens"
    assert bearer(kimchi, secret).status_code == 401


def test_a_user_sees_no_access_action_and_no_tokens_page(
        page: Any, idle_kimchi: Kimchi, pam_users: Any, problems: Any, artifacts: Path) -> None:
    kimchi = idle_kimchi
    admin, user = pam_users.admin, pam_users.user
    r = requests.put(kimchi.url + "/vms/test", json={"users": [user.name]},
                     auth=(admin.name, admin.password), timeout=20)
    assert r.status_code == 200, r.text

    page.anonymous = True
    problems.allowed.append("status of 401")  # GET /session before signing in
    page.goto(kimchi.url + "/#/tokens")
    page.wait_for_selector("#login-form:visible")
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    wait_live(page)
    assert page.locator("#account-role").inner_text() == "User"
    # the tokens page is not theirs: the ISO library instead, and no nav entry
    assert page.locator("#tokens").is_hidden()
    assert page.locator("#isos").is_visible()
    assert page.locator("#nav-tokens").is_hidden()
    assert page.locator("#nav-reports").is_hidden()  # debug reports are for admins too

    page.locator("#nav-vms").click()
    vm = vm_item(page, "test")
    vm.wait_for()
    assert vm.get_by_role("button", name="Access to test").count() == 0  # hidden: not offered at all
    assert vm.locator(".btn-access").is_hidden()
    assert vm.locator(".vm-access").is_hidden()
    page.screenshot(path=str(artifacts / "ui-user-no-access.png"))

    page.goto(kimchi.url + "/#/tokens")
    wait_live(page)
    assert page.locator("#tokens").is_hidden()
    assert page.locator("#nav-tokens").is_hidden()
    page.goto(kimchi.url + "/#/reports")
    wait_live(page)
    assert page.locator("#reports").is_hidden()
    assert page.locator("#isos").is_visible()


def test_the_access_dialog_offers_the_hosts_users(page: Any, idle_kimchi: Kimchi,
                                                   pam_users: Any) -> None:
    kimchi = idle_kimchi
    user = pam_users.user
    page.goto(kimchi.url + "/#/vms")
    wait_live(page)
    vm_item(page, "test").get_by_role("button", name="Access to test").click()
    dialog = page.locator("#vm-access-dialog")
    dialog.wait_for()
    pick = dialog.get_by_role("button", name=f"Add user {user.name}", exact=True)
    pick.click()
    assert page.get_by_label("Users").input_value() == user.name
    assert pick.count() == 0  # offered no more once chosen
    dialog.get_by_role("button", name="Add group kimchi-admin", exact=True).click()
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    got = kimchi.get("/vms/test").json()
    assert got["users"] == [user.name] and got["groups"] == ["kimchi-admin"]
