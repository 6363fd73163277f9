"""/login, /logout, /session and /tokens: signing in with PAM, and API tokens for scripts."""

from __future__ import annotations

from typing import Any

from kimchi import i18n
from kimchi.errors import InvalidOperation
from kimchid.api.gate import Gate, address, is_tls
from kimchid.api.i18n import language_cookie
from kimchid.api.routes import Call, Reply, RouteTable, header
from kimchid.auth.sessions import COOKIE_NAME, EXPIRES_HEADER, cleared_cookie, session_cookie
from kimchid.auth.tokens import MAX_LIFETIME, NAME_PATTERN
from kimchid.model.preferences import Preferences

# bytes of a login body: a user name and a password (PAM itself takes 512 bytes), even
# with every character written as \uXXXX; checked before anything else (anyone may post)
LOGIN_BODY_LIMIT = 8 * 1024

LANGUAGE = {"enum": [*i18n.LANGUAGES, None],
            "description": "the UI's language chosen by this person, on any browser; null: "
                           "each browser's own languages"}
IDENTITY = {"type": "object", "required": ["username", "groups", "role", "language"],
            "properties": {"username": {"type": "string"},
                           "groups": {"type": "array", "items": {"type": "string"}},
                           "role": {"enum": ["admin", "user"]},
                           "language": LANGUAGE}}
PREFERENCES = {"type": "object", "required": ["language"], "properties": {"language": LANGUAGE}}
TOKEN = {"type": "object", "required": ["id", "name", "username", "created_by", "created",
                                        "expires"],
         "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                        "username": {"type": "string"}, "created_by": {"type": "string"},
                        "created": {"type": "string"}, "expires": {"type": ["string", "null"]},
                        "token": {"type": "string",
                                  "description": "the secret: in the answer to POST only"}}}


def register(table: RouteTable, gate: Gate, preferences: Preferences) -> None:
    async def login(call: Call) -> Reply:
        req = call.request
        gate.check_origin(req, "POST", ambient=True)  # no logging in from another site
        who = await gate.login(req, call.body["username"], call.body["password"])
        secret, session = await gate.sessions.create(
            who, address(req), header(req, "user-agent") or "")
        req.setHeader(b"Set-Cookie", session_cookie(secret, secure=is_tls(req)).encode())
        req.setHeader(EXPIRES_HEADER, session.expires_on_header)
        language = (await preferences.get(who.username))["language"]
        if language is not None:  # this browser speaks the person's language from now on
            req.responseHeaders.addRawHeader(
                b"Set-Cookie", language_cookie(language, is_tls(req)).encode())
        return Reply(200, {**who.to_json(), "language": language})

    async def logout(call: Call) -> Reply:
        req = call.request
        gate.check_origin(req, "POST", ambient=True)
        cookie = req.getCookie(COOKIE_NAME.encode())
        if cookie:
            await gate.sessions.delete(cookie.decode(errors="replace"))
        req.setHeader(b"Set-Cookie", cleared_cookie(secure=is_tls(req)).encode())
        return Reply(204, None)

    async def whoami(call: Call) -> dict[str, Any]:
        assert call.who is not None
        language = (await preferences.get(call.who.username))["language"]
        return {**call.who.to_json(), "language": language}

    async def own_preferences(call: Call) -> dict[str, Any]:
        assert call.who is not None
        return await preferences.get(call.who.username)

    async def set_preferences(call: Call) -> dict[str, Any]:
        assert call.who is not None
        prefs = await preferences.update(call.who.username, call.body)
        if "language" in call.body:  # the browser that chose follows at once
            call.request.responseHeaders.addRawHeader(
                b"Set-Cookie", language_cookie(prefs["language"],
                                               is_tls(call.request)).encode())
        return prefs

    table.add("/login", "POST", login, "Sign in with a Linux account (PAM)", "auth",
              public=True, response=IDENTITY, max_body=LOGIN_BODY_LIMIT,
              body={"type": "object", "additionalProperties": False,
                    "required": ["username", "password"],
                    "properties": {"username": {"type": "string", "minLength": 1,
                                                "maxLength": 256},
                                   "password": {"type": "string", "maxLength": 1024}}},
              description="Sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` "
                          "over HTTPS); `Session-Expires-On` says when it ends unless used. "
                          "401 KCHAUTH0001E for any wrong user or password; after repeated "
                          "failures of a user from an address (or of a user from many), "
                          "429 KCHAUTH0008E with `Retry-After` for that client only: a "
                          "client that has not failed is never refused.")
    table.add("/logout", "POST", logout, "Sign out: end this session", "auth", public=True,
              status=204)
    table.add("/session", "GET", whoami, "Who is signed in (for the UI)", "auth",
              response=IDENTITY)
    table.add("/preferences", "GET", own_preferences, "Your own preferences", "auth",
              response=PREFERENCES)
    table.add("/preferences", "PUT", set_preferences, "Change your own preferences", "auth",
              response=PREFERENCES,
              body={"type": "object", "additionalProperties": False, "minProperties": 1,
                    "properties": {"language": LANGUAGE}},
              description="Kept with your account: `POST /login` gives the `language` to "
                          f"each browser you sign in from (the `{i18n.COOKIE}` cookie), "
                          "and this answer to the browser that changes it. null: each "
                          "browser's own languages.")

    async def list_tokens(call: Call) -> list[dict[str, Any]]:
        return [t.to_json() for t in await gate.tokens.list()]

    async def create_token(call: Call) -> Reply:
        assert call.who is not None
        body = call.body
        username = body.get("username") or call.who.username
        if await gate.pam.identity(username) is None:
            raise InvalidOperation("KCHAUTH0012E", username=username)
        value, token = await gate.tokens.create(body["name"], username, call.who.username,
                                                body.get("expires_in"))
        return Reply(201, {**token.to_json(), "token": value},
                     {"Location": f"/tokens/{token.id}"})

    async def revoke_token(call: Call) -> Reply:
        await gate.tokens.revoke(call.args["id"])
        return Reply(204, None)

    table.add("/tokens", "GET", list_tokens, "API tokens (never their secrets)", "auth",
              response={"type": "array", "items": TOKEN})
    table.add("/tokens", "POST", create_token, "Issue an API token", "auth", status=201,
              response=TOKEN,
              body={"type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 64,
                                 "pattern": NAME_PATTERN,
                                 "x-errcode": "KCHAUTH0011E",
                                 "x-reason": "1-64 printable characters"},
                        "username": {"type": "string", "minLength": 1, "maxLength": 64,
                                     "description": "who the token acts as (default: you)"},
                        "expires_in": {"type": "number", "exclusiveMinimum": 0,
                                       "maximum": MAX_LIFETIME,
                                       "description": "seconds; none: until revoked"}}},
              description="The answer's `token` is the secret, shown this once and kept only "
                          "as a SHA-256 hash; use it as `Authorization: Bearer <token>`. The "
                          "token has the role its user has at each use.")
    table.add("/tokens/<id>", "DELETE", revoke_token, "Revoke an API token", "auth",
              status=204)
