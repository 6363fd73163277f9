"""Translations as a user meets them: error reasons in the language the client asks for
(``Accept-Language``, or the ``kimchi_lang`` cookie of the UI's language menu), and the
UI's pages in Brazilian Portuguese and Simplified Chinese — a real kimchid (no workers:
nothing here queues a job), real PAM accounts, and Debian's Chromium with its locale set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser


def anonymous(kimchi: Kimchi, path: str, **headers: str) -> requests.Response:
    """``GET path`` without credentials (the fixture's session sends HTTP Basic)."""
    return requests.get(kimchi.url + path, headers=headers, timeout=10)


def test_error_reasons_follow_the_clients_language_and_errcodes_stay(
        idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    cases = {
        "pt-BR": "KCHVM0002E: A máquina virtual nope não existe",
        "pt-PT,pt;q=0.9": "KCHVM0002E: A máquina virtual nope não existe",  # nearest: pt-BR
        "zh-CN": "KCHVM0002E: 虚拟机 nope 不存在",
        "fr;q=1, zh-Hans;q=0.8, pt-BR;q=0.5": "KCHVM0002E: 虚拟机 nope 不存在",  # q-values
        "zh-TW": "KCHVM0002E: Virtual machine nope does not exist",  # not Simplified
        "": "KCHVM0002E: Virtual machine nope does not exist",
    }
    for accept, reason in cases.items():
        r = kimchi.get("/vms/nope", headers={"Accept-Language": accept} if accept else {})
        assert r.status_code == 404, (accept, r.text)
        body = r.json()
        assert body["errcode"] == "KCHVM0002E"
        assert body["reason"] == reason, accept
        assert body["code"] == "404 Not Found"
    assert kimchi.get("/vms/nope", headers={"Accept-Language": "pt-BR"}).headers[
        "Content-Language"] == "pt-BR"

    # the user's choice (the language menu's cookie) goes before Accept-Language
    r = kimchi.get("/vms/nope", headers={"Accept-Language": "zh-CN",
                                         "Cookie": "kimchi_lang=pt-BR"})
    assert r.json()["reason"].startswith("KCHVM0002E: A máquina virtual")

    # refusals before the caller is known are translated too: a wrong password, no login
    r = requests.post(kimchi.url + "/login", json={"username": "nobody", "password": "x"},
                      headers={"Accept-Language": "pt-BR"}, timeout=20)
    assert r.status_code == 401
    assert r.json() == {"code": "401 Unauthorized", "errcode": "KCHAUTH0001E",
                        "reason": "KCHAUTH0001E: Nome de usuário ou senha inválidos"}
    r = anonymous(kimchi, "/vms", **{"Accept-Language": "zh-CN"})
    assert r.status_code == 401 and r.json()["reason"] == "KCHAUTH0002E: 需要身份验证"

    # a translated reason keeps every value of the request in it
    r = kimchi.get("/tasks?bogus=1", headers={"Accept-Language": "pt-BR"})
    assert r.status_code == 400
    assert r.json()["reason"].startswith("KCHAPI0008E: Parâmetro de consulta bogus inválido")


def test_the_uis_strings_are_served_per_language_without_a_login(idle_kimchi: Kimchi) -> None:
    kimchi = idle_kimchi
    r = anonymous(kimchi, "/i18n", **{"Accept-Language": "pt-BR,en;q=0.5"})
    assert r.status_code == 200
    body = r.json()
    assert body["language"] == "pt-BR" and r.headers["Content-Language"] == "pt-BR"
    assert {"tag": "zh-CN", "name": "简体中文"} in body["languages"]
    assert body["messages"]["Virtual machines"] == "Máquinas virtuais"
    assert body["messages"]["{n} host"] == ["{n} host", "{n} hosts"]
    assert "Accept-Language" in r.headers["Vary"]

    zh = anonymous(kimchi, "/i18n/zh-CN.json").json()
    assert zh["language"] == "zh-CN" and zh["messages"]["Sign in"] == "登录"
    assert anonymous(kimchi, "/i18n/en.json").json()["messages"] == {}
    assert anonymous(kimchi, "/i18n", Cookie="kimchi_lang=zh-CN").json()["language"] == "zh-CN"
    assert anonymous(kimchi, "/i18n").json()["language"] == "en"
    missing = anonymous(kimchi, "/i18n/fr.json")
    assert missing.status_code == 404 and missing.json()["errcode"] == "KCHAPI0001E"


@pytest.fixture
def pt_page(chromium: Any, problems: Any) -> Iterator[Any]:
    """A page of a browser whose language is Brazilian Portuguese (its Accept-Language
    too), signed in by no one."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="pt-BR")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.on("console", lambda m: problems.add(f"console: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.add(f"exception: {e}"))
    yield pg
    context.close()


def test_a_portuguese_browser_gets_portuguese_pages_and_the_menu_switches_language(
        idle_kimchi: Kimchi, pt_page: Any, problems: Any, pam_users: Any,
        artifacts: Any) -> None:
    page = pt_page
    problems.allowed.append("status of 401")  # GET /session before signing in, the wrong password
    page.goto(idle_kimchi.url + "/")
    page.wait_for_selector("#login-form:visible")
    assert page.evaluate("document.documentElement.lang") == "pt-BR"
    assert page.locator("#login-title").inner_text() == "Entrar"
    assert page.locator(".login-sub").inner_text() == "Use sua conta neste host."

    # the server's refusal, in Portuguese, shown as it came
    admin = pam_users.admin
    page.get_by_label("Nome de usuário").fill(admin.name)
    page.get_by_label("Senha", exact=True).fill(admin.password + "x")
    page.get_by_role("button", name="Entrar").click()
    error = page.locator("#login-error")
    error.wait_for()
    assert "KCHAUTH0001E: Nome de usuário ou senha inválidos" in error.inner_text()

    page.get_by_label("Senha", exact=True).fill(admin.password)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_selector('#conn[data-state="live"]')
    nav = page.get_by_role("navigation", name="Seções")
    for label in ("Biblioteca de ISOs", "Modelos", "Máquinas virtuais", "Armazenamento",
                  "Redes", "Tarefas"):
        assert nav.get_by_role("link", name=label).is_visible(), label
    assert page.locator("#conn-text").inner_text() == "Ao vivo"
    assert page.locator("#sign-out").inner_text() == "Sair"
    # the role chip (a module's constant) and a page's texts (a module's at run time)
    assert page.locator("#account-role").inner_text() == "Administrador"
    nav.get_by_role("link", name="Máquinas virtuais").click()
    count = page.locator("#vm-count")
    count.wait_for()
    page.wait_for_function("!/Carregando/.test(document.getElementById('vm-count').textContent)")
    assert "em execução" in count.inner_text(), count.inner_text()
    assert page.title().endswith("· kimchi") and page.title().startswith("Máquinas virtuais")
    page.screenshot(path=str(artifacts / "ui-i18n-pt-BR.png"))

    # the language menu: a choice kept in the browser, the page shown again in it
    menu = page.get_by_label("Idioma")
    assert menu.input_value() == ""  # the browser's language until one is chosen
    with page.expect_navigation():
        menu.select_option("zh-CN")
    page.wait_for_selector('#conn[data-state="live"]')
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    nav = page.get_by_role("navigation", name="栏目")
    assert nav.get_by_role("link", name="虚拟机").is_visible()
    assert page.get_by_label("语言").input_value() == "zh-CN"
    # its API calls now answer in it too (the cookie goes with them)
    reason = page.evaluate("fetch('/vms/nope').then((r) => r.json()).then((b) => b.reason)")
    assert reason == "KCHVM0002E: 虚拟机 nope 不存在"

    # the choice is kept with the account: another browser, in English until its login,
    # shows it once signed in
    other = page.context.browser.new_context(viewport={"width": 1280, "height": 800},
                                             locale="en-US")
    try:
        elsewhere = other.new_page()
        elsewhere.on("console", lambda m: problems.add(f"console: {m.text}")
                     if m.type == "error" else None)
        elsewhere.goto(idle_kimchi.url + "/")
        elsewhere.wait_for_selector("#login-form:visible")
        assert elsewhere.locator("#login-title").inner_text() == "Sign in"
        elsewhere.get_by_label("User name").fill(admin.name)
        elsewhere.get_by_label("Password", exact=True).fill(admin.password)
        with elsewhere.expect_navigation():
            elsewhere.get_by_role("button", name="Sign in").click()
        elsewhere.wait_for_selector('#conn[data-state="live"]')
        assert elsewhere.evaluate("document.documentElement.lang") == "zh-CN"
        assert elsewhere.get_by_label("语言").input_value() == "zh-CN"
        # "Browser language" there gives the choice back to each browser
        with elsewhere.expect_navigation():
            elsewhere.get_by_label("语言").select_option("")
        elsewhere.wait_for_selector('#conn[data-state="live"]')
        assert elsewhere.evaluate("document.documentElement.lang") == "en"
        prefs = elsewhere.evaluate("fetch('/preferences').then((r) => r.json())")
        assert prefs == {"language": None}
    finally:
        other.close()

    with page.expect_navigation():
        page.get_by_label("语言").select_option("en")
    page.wait_for_selector('#conn[data-state="live"]')
    assert page.get_by_role("navigation", name="Sections").get_by_role(
        "link", name="Virtual machines").is_visible()


def test_a_task_bar_shows_its_messages_in_portuguese(
        kimchi_factory: Any, redis_db: Any, pt_page: Any, pam_users: Any,
        artifacts: Any) -> None:
    """The task events come in English (one stream for every watcher): the UI shows their
    progress and their failure in its own language, from each message's template."""
    from kimchi.bus.sync import SyncBus, connect

    kimchi = kimchi_factory(redis_url=redis_db.url, workers=1)
    r = requests.post(kimchi.url + "/login", timeout=20, json={
        "username": pam_users.admin.name, "password": pam_users.admin.password})
    assert r.status_code == 200, r.text
    page = pt_page
    page.context.add_cookies([{"name": "kimchi_session", "url": kimchi.url,
                               "value": r.cookies["kimchi_session"]}])
    page.goto(kimchi.url + "/")
    page.wait_for_selector('#conn[data-state="live"]')

    bus = SyncBus(connect(redis_db.url))
    sleeping = bus.submit("diag.sleep", {"seconds": 30.0, "steps": 30})
    card = page.locator(f'#task-list > li[data-task-id="{sleeping}"]')
    card.wait_for()
    message = card.locator(".task-message")
    page.wait_for_function(
        "(id) => /^passo \\d+ de 30$/.test(document.querySelector("
        "`#task-list > li[data-task-id=\"${id}\"] .task-message`).textContent)", arg=sleeping)
    assert message.inner_text().startswith("passo ")
    page.screenshot(path=str(artifacts / "ui-i18n-task-pt-BR.png"))
    bus.cancel(sleeping)

    failing = bus.submit("diag.fail", {"error": "the disk is on fire"})
    failed = page.locator(f'#task-list > li[data-task-id="{failing}"][data-status="failed"]')
    failed.wait_for()
    assert failed.locator(".task-message").inner_text() == (
        "Motivo: KCHTASK0005E: O job falhou: RuntimeError: the disk is on fire")
    assert failed.locator(".task-status").inner_text() == "Falhou"
