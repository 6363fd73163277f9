"""schemathesis hooks for the fuzzing test (loaded through ``SCHEMATHESIS_HOOKS``).

``refusals_only``: a request valid against its schema is answered with success, 401, 403,
404, 409, 429, or a 400 whose code is one of the spec's ``x-refusals`` (the state of the host
or an object, a rule between fields: ``kimchi.errors.REFUSALS``).  It stands in for
schemathesis' ``positive_data_acceptance``, which takes every 400 for a schema that lies:
the API answers state errors with 400 (Kimchi's convention, ``API.md``), and this check
keeps what that one is for: a 400 with any other code (``KCHAPI0006E``, a name rule missing
from the schema) on a schema-valid request fails the run.

Whether the request is valid is judged here, on what was sent, against the operation's
schemas: the stateful phase fills fields with values taken from earlier answers, which
the schema may refuse though the case is marked positive.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.core import NotSet

ACCEPTED = {401, 403, 404, 409, 429}
FORMATS = Draft202012Validator.FORMAT_CHECKER
JSON = "application/json"


def _typed(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "integer" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _valid(case: Any) -> bool:
    """Whether every parameter and the body sent are valid against the operation's schema."""
    op = case.operation.definition.raw
    sent = {"path": case.path_parameters or {}, "query": case.query or {},
            "header": case.headers or {}}
    for param in op.get("parameters", []):
        values = sent.get(param["in"])
        if values is None or param["name"] not in values:
            if param.get("required") and param["in"] == "header":
                return False
            continue
        value = values[param["name"]]
        for one in value if isinstance(value, list) else [value]:
            checker = Draft202012Validator(param["schema"], format_checker=FORMATS)
            if not checker.is_valid(_typed(one, param["schema"])):
                return False
    for name in sent["query"]:
        if not any(p["in"] == "query" and p["name"] == name for p in op.get("parameters", [])):
            return False
    body = op.get("requestBody")
    if body is None:
        return True
    if isinstance(case.body, NotSet) or case.body is None:
        return not body.get("required")
    if JSON not in body["content"]:  # bytes (an upload's chunk): any bytes are a body
        return True
    return Draft202012Validator(body["content"][JSON]["schema"]).is_valid(case.body)


@schemathesis.check
def refusals_only(ctx: Any, response: Any, case: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    status = response.status_code
    if status < 400 or status in ACCEPTED or status >= 500:  # 5xx: not_a_server_error's
        return
    if not _valid(case):
        return
    refusals = set(case.operation.schema.raw_schema["components"]["x-refusals"])
    try:
        errcode = response.json().get("errcode")
    except ValueError:
        errcode = None
    if status == 400 and errcode in refusals:
        return
    why = ("not one of x-refusals: the schema does not state this rule" if status == 400
           else "not an answer a valid request may get")
    raise AssertionError(f"a request valid against the schema got {status} "
                         f"{errcode or response.text[:200]}: {why}")
