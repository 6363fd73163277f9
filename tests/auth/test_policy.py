"""The rules of access: roles, admin-only routes, VM visibility, headers, the Origin check."""

from __future__ import annotations

import pytest

from kimchi.errors import Forbidden
from kimchid.auth import policy
from kimchid.auth.policy import ADMIN, USER, Identity

ALICE = Identity("alice", ("alice", "ops"), USER)
ROOT = Identity("root", ("root", "kimchi-admin"), ADMIN)


def test_role_is_admin_only_through_an_admin_group():
    admins = ("kimchi-admin", "sudo", "wheel")
    assert policy.role_for(["alice", "wheel"], admins) == ADMIN
    assert policy.role_for(["alice", "ops"], admins) == USER
    assert policy.role_for([], admins) == USER
    assert policy.role_for(["wheel"], []) == USER


def test_identity_is_the_login_answer():
    assert ALICE.to_json() == {"username": "alice", "groups": ["alice", "ops"], "role": "user"}
    assert ROOT.is_admin and not ALICE.is_admin


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/templates"),
    ("PUT", "/templates/<name>"),
    ("DELETE", "/templates/f39"),
    ("POST", "/templates/<name>/clone"),
    ("POST", "/storagepools/default/activate"),
    # images onto the host, at both of a volume's addresses: downloads and uploads, their
    # chunks, giving one up, wipes and clones
    *((method, f"{at}/storagepools/p/storagevolumes{path}")
      for at in ("", "/hosts/h2")
      for method, path in (("POST", ""), ("PUT", "/v.img/content"),
                           ("DELETE", "/v.img/content"), ("POST", "/v.img/wipe"),
                           ("POST", "/v.img/clone"))),
    ("DELETE", "/networks/default"),
    ("GET", "/debugreports"),
    ("GET", "/debugreports/r1/content"),
    ("HEAD", "/debugreports/r1"),
    ("POST", "/host/reboot"),
    ("POST", "/vms"),
    ("PUT", "/vms/<name>"),
    ("DELETE", "/vms/vm1"),
    ("POST", "/vms/<name>/clone"),
    ("POST", "/vms/<name>/template"),
    # a VM's canonical address is ruled as its root one
    ("PUT", "/hosts/<host>/vms/<name>"),
    ("POST", "/hosts/h2/vms/web/clone"),
    ("POST", "/hosts/h2/vms/web/template"),
    ("POST", "/hosts/h2/vms/web/snapshots"),
    ("POST", "/hosts/h2/vms/web/snapshots/s1/revert"),
    ("DELETE", "/hosts/h2/vms/web/storages/vdb"),
    ("POST", "/hosts/h2/vms/web/ifaces"),
    ("POST", "/hosts/h2/networks"),
    ("POST", "/isos/scan"),
    ("POST", "/config/capabilities/refresh"),
    ("GET", "/tokens"),
    ("DELETE", "/tokens/<id>"),
    ("GET", "/metrics"),  # the figures of every host and user (Prometheus: [metrics] allow)
    ("GET", "/auditlog"),  # who changed what, from where
    ("HEAD", "/auditlog"),
    ("POST", "/templates/"),  # a trailing slash routes the same
    ("POST", "//templates"),
    ("POST", "/%74emplates"),  # nor does an encoded letter slip past
])
def test_admin_only_methods(method: str, path: str):
    assert policy.admin_only(method, path)
    with pytest.raises(Forbidden) as e:
        policy.check_route(ALICE, method, path)
    assert e.value.errcode == "KCHAUTH0005E" and e.value.status == 403
    policy.check_route(ROOT, method, path)  # admins pass


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/templates"),
    ("GET", "/templates/<name>"),
    ("GET", "/storagepools/default"),
    # how much of an upload has come: reading, like the volume itself
    ("HEAD", "/storagepools/p/storagevolumes/v.img/content"),
    ("GET", "/hosts/h2/storagepools/p/storagevolumes/v.img/content"),
    ("GET", "/networks"),
    ("GET", "/host"),
    ("GET", "/host/stats"),
    ("GET", "/vms"),
    ("GET", "/vms/<name>"),
    ("GET", "/vms/<name>/screenshot"),
    ("POST", "/vms/<name>/start"),
    ("POST", "/vms/<name>/poweroff"),
    ("POST", "/vms/clone/start"),  # a VM named "clone" is just a name
    ("POST", "/hosts/h2/vms/web/start"),
    ("GET", "/hosts/h2/vms/web/snapshots"),
    ("GET", "/hosts/h2/vms/web/storages"),
    ("GET", "/hosts/h2/vms/web/screenshot"),
    ("GET", "/hosts/h2/vms/web/console"),
    ("GET", "/hosts/h2/interfaces"),
    ("GET", "/isos"),
    ("GET", "/tasks"),
    ("DELETE", "/tasks/<id>"),
    ("GET", "/events"),
    ("GET", "/config"),
    ("GET", "/config/capabilities"),
])
def test_what_users_may_call(method: str, path: str):
    assert not policy.admin_only(method, path)
    policy.check_route(ALICE, method, path)


def test_a_rule_with_a_wildcard_matches_one_segment_only():
    rule = policy.AdminRule("/vms/*", frozenset({"DELETE"}), subtree=False)
    assert policy.admin_only("DELETE", "/vms/x", [rule])
    assert not policy.admin_only("DELETE", "/vms", [rule])
    assert not policy.admin_only("DELETE", "/vms/x/disks/y", [rule])
    assert not policy.admin_only("GET", "/vms/x", [rule])


VM_MINE = {"name": "mine", "users": ["alice"], "groups": []}
VM_OPS = {"name": "shared", "users": [], "groups": ["ops"]}
VM_OTHER = {"name": "other", "users": ["bob"], "groups": ["dev"]}
VM_BARE = {"name": "bare"}


def test_users_see_their_vms_by_name_or_group_admins_see_all():
    vms = [VM_MINE, VM_OPS, VM_OTHER, VM_BARE]
    assert policy.visible_vms(ALICE, vms) == [VM_MINE, VM_OPS]
    assert policy.visible_vms(ROOT, vms) == vms
    with pytest.raises(Forbidden) as e:
        policy.check_vm(ALICE, VM_OTHER)
    assert e.value.errcode == "KCHAUTH0006E" and "other" in e.value.reason
    policy.check_vm(ALICE, VM_OPS)


def test_tasks_are_seen_by_their_owner_and_by_who_sees_their_vm():
    visible = {"mine", "a b"}.__contains__
    assert policy.can_see_task(ALICE, {"owner": "alice", "target_uri": "/isos"}, visible)
    assert policy.can_see_task(ALICE, {"owner": None, "target_uri": "/vms/mine"}, visible)
    assert policy.can_see_task(ALICE, {"target_uri": "/vms/a%20b/clone"}, visible)
    assert not policy.can_see_task(ALICE, {"owner": "bob", "target_uri": "/vms/other"}, visible)
    assert not policy.can_see_task(ALICE, {"owner": None, "target_uri": "/isos"}, visible)
    assert policy.can_see_task(ROOT, {"owner": "bob", "target_uri": "/isos"}, visible)


def test_security_headers():
    h = policy.security_headers(tls=True)
    assert h["X-Frame-Options"] == "DENY"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "same-origin"
    assert h["Strict-Transport-Security"].startswith("max-age=")
    csp = h["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "Strict-Transport-Security" not in policy.security_headers(tls=False)


def allowed(method: str = "POST", origin: str | None = "https://kvm1:8001", **kw) -> bool:
    args = {"host": "kvm1:8001", "scheme": "https", "ambient": True, **kw}
    return policy.origin_allowed(method=method, origin=origin, **args)


def test_cookie_requests_from_our_own_origin_pass():
    assert allowed()
    assert allowed(origin="HTTPS://KVM1:8001")
    assert allowed(origin="https://kvm1", host="kvm1:443")
    assert allowed(origin="http://[::1]:8000", host="[::1]:8000", scheme="http")


def test_cross_site_unsafe_requests_and_websockets_are_refused():
    assert not allowed(origin="https://evil.example")
    assert not allowed(origin="http://kvm1:8001")  # another scheme is another origin
    assert not allowed(origin="https://kvm1:9999")  # another port: SameSite does not help
    assert not allowed(origin="null")
    assert not allowed(origin="https://kvm1:8001@evil.example")
    assert not allowed(method="DELETE", origin="https://evil.example")
    assert not allowed(method="GET", origin="https://evil.example", websocket=True)
    assert allowed(method="GET", origin="https://kvm1:8001", websocket=True)
    assert allowed(method="GET", origin="wss://kvm1:8001", websocket=True)


def test_safe_methods_bearer_tokens_and_scripts_are_not_checked():
    assert allowed(method="GET", origin="https://evil.example")
    assert allowed(origin="https://evil.example", ambient=False)  # a bearer token
    assert allowed(origin=None)  # a script: browsers always send Origin on a POST
    assert not allowed(origin=None, sec_fetch_site="cross-site")
    assert not allowed(origin=None, sec_fetch_site="same-site")
    assert allowed(origin=None, sec_fetch_site="same-origin")


def test_extra_origins_for_a_reverse_proxy():
    assert not allowed(origin="https://kimchi.example.com")
    assert allowed(origin="https://kimchi.example.com",
                   extra_origins=["https://kimchi.example.com:443"])


def test_normalise_origin():
    assert policy.normalise_origin("https://Host:443") == "https://host"
    assert policy.normalise_origin("http://host:8000/") == "http://host:8000"
    assert policy.normalise_origin("wss://host") == "https://host"
    for bad in ("null", "", "ftp://host", "https://", "https://host/path", "https://h:99999"):
        assert policy.normalise_origin(bad) is None, bad


def test_a_401_challenges_for_basic_except_a_pages_own_scripts():
    assert policy.challenge_headers(None) == {
        "WWW-Authenticate": 'Basic realm="kimchi", charset="UTF-8"'}
    assert policy.challenge_headers("XMLHttpRequest") == {}
    assert policy.challenge_headers("xmlhttprequest") == {}


def test_credentials_from_the_authorization_header():
    assert policy.basic_credentials("Basic YWxpY2U6czNjcjM6dA==") == ("alice", "s3cr3:t")
    assert policy.basic_credentials("basic  YWxpY2U6") == ("alice", "")
    for bad in (None, "", "Basic", "Basic !!!", "Basic YWxpY2U=", "Basic OnB3",
                "Bearer YWxpY2U6cHc=", "Basic //79"):
        assert policy.basic_credentials(bad) is None, bad
    assert policy.bearer_token("Bearer kch_abc") == "kch_abc"
    assert policy.bearer_token("bearer  kch_abc ") == "kch_abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic kch_abc"):
        assert policy.bearer_token(bad) is None, bad
