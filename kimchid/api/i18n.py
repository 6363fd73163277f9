"""/i18n: the languages kimchi speaks, and the UI's strings in one of them (no login)."""

from __future__ import annotations

from typing import Any

from kimchi import i18n
from kimchi.errors import NotFound
from kimchid.api.routes import Call, Reply, RouteTable, clip, request_language

LANG_TAG = {"enum": list(i18n.LANGUAGES)}
LANG_PARAM = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,35}$",
              "description": "a tag of `GET /i18n`'s `languages`; another one is a 404"}
MESSAGES_SCHEMA = {
    "type": "object",
    "description": "English text -> its translation (for a plural text, keyed by its "
                   "singular, the list of its plural forms), the templates of the tasks' "
                   "messages (a task's `message_id`) among them; and errcode -> the "
                   "translation of that error's message (a failed task's `errcode`); "
                   "empty in English",
    "additionalProperties": {"oneOf": [{"type": "string"},
                                       {"type": "array", "items": {"type": "string"}}]},
}
LANGUAGES_SCHEMA = {
    "type": "array",
    "items": {"type": "object", "required": ["tag", "name"],
              "properties": {"tag": LANG_TAG,
                             "name": {"type": "string",
                                      "description": "the language's name in itself"}}},
}
CATALOGUE_SCHEMA = {
    "type": "object", "required": ["language", "languages", "messages"],
    "properties": {"language": LANG_TAG, "languages": LANGUAGES_SCHEMA,
                   "messages": MESSAGES_SCHEMA},
}
ACCEPT_LANGUAGE = ("the languages the client reads, best first (q-values); the "
                   f"`{i18n.COOKIE}` cookie, the user's choice, goes first",
                   {"type": "string"})


def language_cookie(tag: str | None, secure: bool) -> str:
    """The ``Set-Cookie`` value that makes ``tag`` this browser's language (None: its own
    languages again).  Not ``HttpOnly``: the UI reads it to show the choice in its menu."""
    flags = "; Path=/; SameSite=Strict" + ("; Secure" if secure else "")
    if tag is None:
        return f"{i18n.COOKIE}=; Max-Age=0" + flags
    return f"{i18n.COOKIE}={tag}; Max-Age=31536000" + flags


def _catalogue(tag: str) -> dict[str, Any]:
    return {"language": tag,
            "languages": [{"tag": k, "name": name} for k, (_, name) in i18n.LANGUAGES.items()],
            "messages": i18n.ui_messages(tag)}


def register(table: RouteTable) -> None:
    async def negotiated(call: Call) -> Reply:
        tag = request_language(call.request)
        return Reply(200, _catalogue(tag), {"Content-Language": tag,
                                            "Vary": "Accept-Language, Cookie"})

    async def one(call: Call) -> Reply:
        wanted = call.args["lang"].replace("_", "-").lower()
        tag = next((t for t in i18n.LANGUAGES if t.lower() == wanted), None)
        if tag is None:  # a language kimchi does not speak: nothing there
            raise NotFound("KCHAPI0001E", path=clip(call.request.path.decode(errors="replace")))
        return Reply(200, _catalogue(tag), {"Content-Language": tag})

    table.add("/i18n", "GET", negotiated, "The UI's strings in the language of this request",
              "ui", public=True, response=CATALOGUE_SCHEMA,
              headers={"Accept-Language": ACCEPT_LANGUAGE},
              description="The language is the `kimchi_lang` cookie's (set by the UI's "
                          "language menu) when kimchi speaks it, else the best of "
                          "`Accept-Language` that it speaks, else `en`. The same choice "
                          "translates the `reason` of every error answer (its `errcode` "
                          "stays).")
    table.add("/i18n/<lang>.json", "GET", one, "The UI's strings in one language", "ui",
              public=True, response=CATALOGUE_SCHEMA, params={"lang": LANG_PARAM},
              description="`lang` is a tag of `GET /i18n`'s `languages` (en, pt-BR, zh-CN).")
