"""``/openapi.json`` says only what the server does: every operation it lists is routed,
and the rules the server enforces on a body are the body schema's."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import Kimchi

_PARAM = re.compile(r"\{(\w+)\}")


def _param_values(spec: dict[str, Any], path: str, method: str) -> list[dict[str, str]]:
    """Concrete arguments for ``path``: a plain one for each parameter, then, one
    parameter at a time, every literal segment that other paths have where it stands
    (``current`` for ``{snap}``) that its schema admits: the values that would route
    to a sibling route instead."""
    schemas = {p["name"]: p["schema"] for p in spec["paths"][path][method]["parameters"]
               if p["in"] == "path"}
    segments = path.strip("/").split("/")
    plain = {n: "x1" for n in schemas}
    out = [plain]
    for i, seg in enumerate(segments):
        m = _PARAM.fullmatch(seg)
        if not m:
            continue
        literals = {other.strip("/").split("/")[i] for other in spec["paths"]
                    if len(other.strip("/").split("/")) > i}
        for value in sorted(v for v in literals if not _PARAM.fullmatch(v)):
            if Draft202012Validator(schemas[m[1]]).is_valid(value):
                out.append({**plain, m[1]: value})
    return out


def test_every_operation_in_the_spec_is_routed(kimchi: Kimchi) -> None:
    spec = kimchi.get("/openapi.json").json()
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            for args in _param_values(spec, path, method):
                url = _PARAM.sub(lambda m, a=args: a[m[1]], path)  # type: ignore[misc]
                # an Accept that admits nothing: answered (406) before any handler runs
                r = kimchi.http.request(method.upper(), kimchi.url + url, timeout=10,
                                        headers={"Accept": "application/x-nothing"})
                assert r.status_code != 405, (method, path, url, r.text)
                checked += 1
    assert checked > 60


def test_snapshots_current_is_read_only_and_no_snapshot_path_names_it(kimchi: Kimchi) -> None:
    spec = kimchi.get("/openapi.json").json()
    assert set(spec["paths"]["/vms/{name}/snapshots/current"]) == {"get"}
    for method in ("get", "delete"):
        op = spec["paths"]["/vms/{name}/snapshots/{snap}"][method]
        snap = next(p["schema"] for p in op["parameters"] if p["name"] == "snap")
        assert not Draft202012Validator(snap).is_valid("current")
        assert Draft202012Validator(snap).is_valid("before-upgrade")
    body = spec["paths"]["/vms/{name}/snapshots"]["post"]["requestBody"]
    name = body["content"]["application/json"]["schema"]["properties"]["name"]
    assert not Draft202012Validator(name).is_valid("current")
    # the server agrees: current takes no DELETE, and no snapshot is named current
    r = kimchi.delete("/vms/nosuch/snapshots/current")
    assert r.status_code == 405 and r.json()["errcode"] == "KCHAPI0002E", r.text
    assert "DELETE" not in r.headers["Allow"] and "GET" in r.headers["Allow"]
    r = kimchi.post("/vms/nosuch/snapshots", {"name": "current"})
    assert r.status_code == 400, r.text


def test_every_operation_documents_400_and_413_as_it_answers_them(kimchi: Kimchi) -> None:
    spec = kimchi.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "KCHAPI0011E" in responses["413"]["description"], (method, path)
            assert "KCHAPI0008E" in responses["400"]["description"], (method, path)
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert "KCHAPI0006E" in responses["400"]["description"], (method, path)
                assert "KCHAPI0004E" in responses["415"]["description"], (method, path)
            elif "requestBody" in op:  # bytes (a chunk of an upload)
                assert "KCHAPI0014E" in responses["415"]["description"], (method, path)
            for answer in ("400", "413"):
                assert responses[answer]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}
    # and it answers them so: a body over the limit of a route that takes one
    r = kimchi.http.post(kimchi.url + "/isos/scan", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["errcode"] == "KCHAPI0011E", r.text
    r = kimchi.post("/isos/scan", {"path": 1})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHAPI0006E", r.text


# (method, path, body with the field as X, what it documents, a value the schema's pattern
# refuses, one it admits, the code of the refusal): the handlers' own rules, now in the schema
SCHEMA_RULES = [
    ("post", "/isos/scan", {"path": "X"}, ("path",), "relative/dir", "/does/not/exist",
     "KCHISO0001E"),
    ("post", "/storagepools", {"name": "p1", "type": "netfs", "path": "X"}, ("path",),
     "mnt/x", "/mnt/x", "KCHPOOL0004E"),
    ("post", "/templates", {"name": "t1", "source_media": {"type": "disk", "path": "X"}},
     ("source_media", "path"), "isos/f.iso", "/does/not/exist.iso", "KCHTMPL0004E"),
    ("post", "/templates", {"name": "t1", "cdrom": "X"}, ("cdrom",), "f.iso",
     "/does/not/exist.iso", "KCHTMPL0004E"),
    ("post", "/vms/{name}/storages", {"type": "cdrom", "path": "X"}, ("path",), "f.iso",
     "/does/not/exist.iso", "KCHVMSTOR0002E"),
    ("put", "/vms/{name}/storages/{dev}", {"path": "X"}, ("path",), "f.iso",
     "/does/not/exist.iso", "KCHVMSTOR0002E"),
    ("post", "/vms/{name}/snapshots", {"name": "X"}, ("name",), "current", "before-upgrade",
     "KCHSNAP0004E"),
    ("post", "/vms/{name}/snapshots", {"name": "X"}, ("name",), "-dash", "before-upgrade",
     "KCHSNAP0004E"),
]


def _with(body: Any, value: str) -> Any:
    if isinstance(body, dict):
        return {k: _with(v, value) for k, v in body.items()}
    return value if body == "X" else body


def _field_schema(spec: dict[str, Any], method: str, path: str,
                  field: tuple[str, ...]) -> dict[str, Any]:
    schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    for name in field:
        schema = schema["properties"][name]
    return schema


@pytest.mark.parametrize("method, path, body, field, refused, admitted, errcode", SCHEMA_RULES,
                         ids=[f"{r[0]} {r[1]} {'.'.join(r[3])}={r[4]}" for r in SCHEMA_RULES])
def test_a_value_the_schema_refuses_is_a_400_and_one_it_admits_is_not_for_that_reason(
        kimchi: Kimchi, method: str, path: str, body: dict[str, Any], field: tuple[str, ...],
        refused: str, admitted: str, errcode: str) -> None:
    spec = kimchi.get("/openapi.json").json()
    schema = Draft202012Validator(_field_schema(spec, method, path, field))
    assert not schema.is_valid(refused) and schema.is_valid(admitted)
    url = kimchi.url + path.replace("{name}", "nosuch").replace("{dev}", "hdc")
    r = kimchi.http.request(method.upper(), url, json=_with(body, refused), timeout=10)
    assert r.status_code == 400 and r.json()["errcode"] == errcode, r.text
    r = kimchi.http.request(method.upper(), url, json=_with(body, admitted), timeout=10)
    # refused for another reason (a missing source, a VM that does not exist), if at all
    assert r.json().get("errcode") not in (errcode, "KCHAPI0006E") or (
        admitted not in r.json()["reason"]), r.text


# (method, path, body, the code): requests the handlers refused before the rule was in the
# schema; now the schema refuses each too, and the server answers with the same code
BODY_RULES = [
    ("post", "/networks", {"name": "n1", "connection": "nat", "subnet": "8.8.8.0/24"},
     "KCHNET0009E"),
    ("post", "/networks", {"name": "n1", "connection": "nat", "subnet": "10.1.1.0/30"},
     "KCHNET0009E"),
    ("post", "/networks", {"name": "n1", "connection": "macvtap"}, "KCHNET0004E"),
    ("post", "/networks", {"name": "n1", "connection": "nat", "interface": "eth0"},
     "KCHNET0004E"),
    ("post", "/storagepools", {"name": "p1", "type": "dir"}, "KCHPOOL0004E"),
    ("post", "/storagepools", {"name": "p1", "type": "netfs", "source": {"host": "nas"}},
     "KCHPOOL0004E"),
    ("post", "/storagepools", {"name": "p1", "type": "iscsi"}, "KCHPOOL0004E"),
    ("post", "/templates", {"name": "t1"}, "KCHTMPL0013E"),
    ("post", "/templates", {"name": "t1", "source_media": {"type": "disk"}}, "KCHTMPL0013E"),
    ("post", "/templates", {"name": "t1", "cdrom": "/a.iso",
                            "source_media": {"type": "disk", "path": "/a.iso"}},
     "KCHTMPL0010E"),
    ("put", "/templates/{name}", {"cdrom": "/a.iso",
                                  "source_media": {"type": "netboot"}}, "KCHTMPL0010E"),
    ("post", "/vms/{name}/storages", {"type": "disk"}, "KCHVMSTOR0002E"),
    ("post", "/vms/{name}/storages", {"type": "cdrom", "pool": "default", "vol": "v"},
     "KCHVMSTOR0002E"),
    ("post", "/vms/{name}/storages", {"type": "disk", "pool": "default"}, "KCHVMSTOR0002E"),
    ("post", "/vms/{name}/storages", {"type": "disk", "pool": "default", "vol": "v",
                                      "path": "/a.img"}, "KCHVMSTOR0002E"),
]


@pytest.mark.parametrize("method, path, body, errcode", BODY_RULES,
                         ids=[f"{r[0]} {r[1]} {r[3]} {i}" for i, r in enumerate(BODY_RULES)])
def test_a_body_the_handler_refuses_whatever_the_state_the_schema_refuses_too(
        kimchi: Kimchi, method: str, path: str, body: dict[str, Any], errcode: str) -> None:
    spec = kimchi.get("/openapi.json").json()
    schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    assert not Draft202012Validator(schema).is_valid(body)
    where = path.replace("{name}", "nosuch" if path.startswith("/templates") else "test")
    r = kimchi.http.request(method.upper(), kimchi.url + where, json=body, timeout=10)
    assert r.status_code == 400 and r.json()["errcode"] == errcode, r.text


def test_the_spec_lists_the_refusals_and_a_refusal_is_one_of_them(kimchi: Kimchi) -> None:
    from kimchi.errors import REFUSALS

    spec = kimchi.get("/openapi.json").json()
    assert set(spec["components"]["x-refusals"]) == REFUSALS
    # a valid request refused by the state of things: a code the spec lists as a refusal
    r = kimchi.post("/networks", {"name": "default", "connection": "isolated"})
    assert r.status_code == 400 and r.json()["errcode"] in spec["components"]["x-refusals"]
    # a body the route takes without fields may be left out altogether
    assert not spec["paths"]["/debugreports"]["post"]["requestBody"]["required"]
    assert spec["paths"]["/vms"]["post"]["requestBody"]["required"]


def test_a_405_allows_only_the_methods_that_take_the_path(kimchi: Kimchi) -> None:
    r = kimchi.post("/vms/nosuch/snapshots/current")
    assert r.status_code == 405 and r.json()["errcode"] == "KCHAPI0002E", r.text
    assert r.headers["Allow"] == "GET, HEAD"
