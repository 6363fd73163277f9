"""The login throttle against a real daemon and real PAM: it stops guessing, not users."""

from __future__ import annotations

import threading
from collections.abc import Callable

import requests

from tests.conftest import Kimchi


def _together(n: int, call: Callable[[], requests.Response]) -> list[requests.Response]:
    """``call()`` from ``n`` threads released at once; the answers."""
    start = threading.Barrier(n)
    answers: list[requests.Response] = []

    def one() -> None:
        start.wait()
        answers.append(call())

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_first_requests_of_a_script_all_get_in_on_one_pam_check(
        kimchi_factory, redis_db, pam_users):
    k: Kimchi = kimchi_factory(redis_url=redis_db.url)  # just started: nothing remembered
    admin = pam_users.admin
    answers = _together(12, lambda: requests.get(
        k.url + "/session", auth=(admin.name, admin.password), timeout=30))
    assert sorted(r.status_code for r in answers) == [200] * 12, [r.text for r in answers]
    assert k.log_text().count(f"login accepted for {admin.name} ") == 1  # PAM asked once


def test_concurrent_sign_ins_all_get_a_session_on_one_pam_check(
        kimchi_factory, redis_db, pam_users):
    k: Kimchi = kimchi_factory(redis_url=redis_db.url)
    admin = pam_users.admin
    answers = _together(12, lambda: requests.post(
        k.url + "/login", json={"username": admin.name, "password": admin.password},
        timeout=30))
    assert sorted(r.status_code for r in answers) == [200] * 12, [r.text for r in answers]
    assert len({r.cookies["kimchi_session"] for r in answers}) == 12  # a session each
    assert k.log_text().count(f"login accepted for {admin.name} ") == 1


def test_guessing_a_users_password_does_not_lock_the_admin_out_of_that_address(
        kimchi_factory, redis_db, pam_users):
    # delays long enough that PAM's own 2 s on a wrong password never outlasts one
    k: Kimchi = kimchi_factory(redis_url=redis_db.url,
                               extra={"auth": {"throttle_base_delay": 60.0}})
    x = pam_users.user.name
    codes = []
    for i in range(10):  # one after another, as a guessing script would
        r = requests.get(k.url + "/session", auth=(x, f"guess{i}"), timeout=30)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["errcode"] == "KCHAUTH0008E"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert codes == [401] * 5 + [429] * 5  # 5 free attempts, then refused without PAM
    admin = pam_users.admin
    r = requests.get(k.url + "/session", auth=(admin.name, admin.password), timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(k.url + "/login", json={"username": admin.name,
                                              "password": admin.password}, timeout=30)
    assert r.status_code == 200, r.text


def test_a_refused_login_says_too_many_requests(kimchi_factory, redis_db, pam_users):
    k: Kimchi = kimchi_factory(redis_url=redis_db.url,
                               extra={"auth": {"throttle_free_attempts": 0,
                                               "throttle_base_delay": 60.0}})
    r = requests.post(k.url + "/login", json={"username": pam_users.user.name,
                                              "password": "wrong"}, timeout=30)
    assert r.status_code == 401
    r = requests.post(k.url + "/login", json={"username": pam_users.user.name,
                                              "password": "wrong"}, timeout=30)
    assert r.status_code == 429
    assert r.reason == "Too Many Requests"  # the status line, not "429 Unknown Status"
    assert r.json()["code"] == "429 Too Many Requests"
