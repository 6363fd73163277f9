"""The messages of tasks, kept translatable: an English template and its values.

A job writes ``ctx.progress(40, TaskText("Copying {name}: {percent} %", name=n,
percent=f"{p:.0f}"))``; the task keeps ``message`` (the English text, rendered, as every
client has always read it), ``message_id`` (the template: a gettext msgid, extracted by
Babel with the keyword ``TaskText``, see babel.cfg) and ``message_args`` (the values, as
JSON).  A message that is an error's (:meth:`TaskText.error`, :meth:`TaskText.of_error`)
keeps its ``errcode`` too, and is translated as the error's reason is.  kimchid answers
with ``message`` in the language of the request (:func:`kimchi.i18n.task_message`); the UI
translates the events, which many watchers share, itself.

Templates hold plain ``{name}`` fields (no format spec: the UI fills them too); pass
numbers already formatted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class TaskText:
    """One message of a task: an English template and its values (or an error's)."""

    __slots__ = ("args", "errcode", "template")

    def __init__(self, template: str, /, **args: Any) -> None:
        self.template = template
        self.args = args
        self.errcode = ""

    @classmethod
    def error(cls, errcode: str, /, **params: Any) -> TaskText:
        """The message of error ``errcode`` of kimchi/errors.py's CATALOGUE."""
        from kimchi.errors import CATALOGUE

        text = cls(CATALOGUE[errcode], **params)
        text.errcode = errcode
        return text

    @classmethod
    def verbatim(cls, text: str) -> TaskText:
        """A text of no template, shown as it is in every language (a record of before
        templates; never what a job writes)."""
        return cls(text.replace("{", "{{").replace("}", "}}"))

    @classmethod
    def of_error(cls, e: Any) -> TaskText:
        """The message of a :class:`kimchi.errors.KimchiError`."""
        return cls.error(e.errcode, **e.params)

    @classmethod
    def of_task(cls, task: Mapping[str, Any]) -> TaskText:
        """The message a task (its public JSON) carries now: passed on by a job that
        follows another one.  A record of before templates has its English text only."""
        args = task.get("message_args") or {}
        errcode = task.get("errcode") or ""
        if errcode:
            return cls.error(errcode, **args)
        if task.get("message_id"):
            return cls(task["message_id"], **args)
        return cls.verbatim(task.get("message") or "")

    def __str__(self) -> str:
        """The English text (``"<errcode>: <message>"`` for an error)."""
        if self.errcode:
            from kimchi.errors import message

            return message(self.errcode, **self.args)
        try:
            return self.template.format(**self.args)
        except (KeyError, IndexError, ValueError):
            return self.template

    def __repr__(self) -> str:
        return f"TaskText({self.template!r}, errcode={self.errcode!r}, **{self.args!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskText) and (self.template, self.errcode, self.args) == (
            other.template, other.errcode, other.args)

    def __hash__(self) -> int:
        return hash((self.template, self.errcode))

    def argv(self) -> list[str]:
        """What the bus scripts take for a message: the English text, the template, the
        values (JSON, '' when none) and the errcode ('' when none)."""
        return [str(self), self.template,
                json.dumps(self.args, default=str) if self.args else "", self.errcode]

    def fields(self) -> dict[str, Any]:
        """The message as a task's or an event's JSON fields."""
        return {"message": str(self), "message_id": self.template or None,
                "message_args": json.loads(json.dumps(self.args, default=str))
                if self.args else None,
                "errcode": self.errcode or None}

