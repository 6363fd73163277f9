"""A person's preferences, kept with their account (a real kimchid, real PAM accounts): the
language chosen on one browser is given to every browser they sign in from."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Kimchi


@pytest.fixture
def k(kimchi_factory: Any, redis_db: Any) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0)


def signed_in(k: Kimchi, account: Any) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    r = s.post(k.url + "/login", json={"username": account.name,
                                       "password": account.password}, timeout=20)
    assert r.status_code == 200, r.text
    return s, r


def language_cookie(r: requests.Response) -> str | None:
    """The ``Set-Cookie`` of ``kimchi_lang`` in an answer (None: there is none)."""
    for value in r.raw.headers.getlist("Set-Cookie"):
        if value.startswith("kimchi_lang="):
            return value
    return None


def test_a_language_chosen_once_follows_the_person_to_each_login(
        kimchi_factory: Any, redis_db: Any, pam_users: Any) -> None:
    k = kimchi_factory(redis_url=redis_db.url, workers=0)
    user, admin = pam_users.user, pam_users.admin
    s, r = signed_in(k, user)
    assert r.json()["language"] is None and language_cookie(r) is None
    assert s.get(k.url + "/preferences").json() == {"language": None}

    r = s.put(k.url + "/preferences", json={"language": "pt-BR"})
    assert r.status_code == 200 and r.json() == {"language": "pt-BR"}
    cookie = language_cookie(r)
    assert cookie is not None and cookie.startswith("kimchi_lang=pt-BR;")
    assert "HttpOnly" not in cookie and "SameSite=Strict" in cookie  # the UI reads it

    # another browser: its login gives it the language, and its errors come in it
    other, r = signed_in(k, user)
    assert r.json()["language"] == "pt-BR"
    assert (language_cookie(r) or "").startswith("kimchi_lang=pt-BR;")
    assert other.get(k.url + "/session").json()["language"] == "pt-BR"
    nope = other.get(k.url + "/vms/nope")
    assert nope.json()["reason"] == "KCHVM0002E: A máquina virtual nope não existe"
    assert nope.json()["errcode"] == "KCHVM0002E"

    # each person has their own
    _s, r = signed_in(k, admin)
    assert r.json()["language"] is None and language_cookie(r) is None

    # kept on disk: a daemon started again on the same state still knows it
    k.restart()
    _s, r = signed_in(k, user)
    assert r.json()["language"] == "pt-BR"

    # null gives the choice back to each browser (and this one forgets it)
    s, _r = signed_in(k, user)
    r = s.put(k.url + "/preferences", json={"language": None})
    assert r.json() == {"language": None}
    assert (language_cookie(r) or "").startswith("kimchi_lang=;")
    _s, r = signed_in(k, user)
    assert r.json()["language"] is None and language_cookie(r) is None


def test_bad_preferences_are_refused_and_change_nothing(k: Kimchi, pam_users: Any) -> None:
    s, _r = signed_in(k, pam_users.user)
    assert s.put(k.url + "/preferences", json={"language": "zh-CN"}).status_code == 200
    for body in ({"language": "fr"}, {"language": 7}, {}, {"language": "pt-BR", "theme": "x"},
                 ["pt-BR"]):
        r = s.put(k.url + "/preferences", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errcode"].startswith("KCHAPI"), body
    assert s.get(k.url + "/preferences").json() == {"language": "zh-CN"}
    anon = requests.put(k.url + "/preferences", json={"language": "en"}, timeout=10)
    assert anon.status_code == 401 and anon.json()["errcode"] == "KCHAUTH0002E"
