"""What every command receives: the resolved settings, the client and the output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from kimchi.cli.client import USAGE, Client, CliError
from kimchi.cli.render import Output
from kimchi.cli.settings import Settings, SettingsError, resolve

F = TypeVar("F", bound=Callable[..., Any])


class Session:
    """One run of the CLI: built from the root's options, the client made on first use."""

    current: ClassVar[Session | None] = None  # this run's, for the error report after it

    def __init__(self, given: dict[str, Any], profile: str | None, config: Path | None,
                 output: Output) -> None:
        Session.current = self
        self.given = given
        self.profile = profile
        self.config = config
        self.output = output
        self._client: Client | None = None

    def settings(self) -> Settings:
        try:
            settings, warnings = resolve(self.given, self.profile, self.config)
        except SettingsError as e:
            raise CliError(str(e), USAGE) from None
        for w in warnings:
            self.output.warn(w)
        if settings.url.startswith("http://") and (settings.token or settings.user):
            host = settings.url.split("://", 1)[1].split("/")[0].rsplit(":", 1)[0]
            if host not in ("localhost", "127.0.0.1", "[::1]"):
                self.output.warn(f"credentials go unencrypted to {settings.url}: use https")
        return settings

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.settings(), password_prompt=_prompt)
        return self._client


def _prompt(user: str) -> str | None:
    """Ask for ``user``'s password on a terminal; None when there is none to ask on."""
    if not sys.stdin.isatty():
        return None
    return str(click.prompt(f"Password for {user}", hide_input=True, err=True))


def session() -> Session:
    obj = click.get_current_context().find_object(Session)
    assert obj is not None, "the root command makes the session"
    return obj


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        found = ctx.find_object(Session)
        if found is not None:
            found.output.json = True


def json_option(f: F) -> F:
    """``--json`` on a command too (``kimchi vms list --json`` as ``kimchi --json vms list``)."""
    return click.option("--json", "as_json", is_flag=True, expose_value=False,
                        callback=_set_json, is_eager=False,
                        help="Print JSON (for scripts) instead of a table.")(f)


def parse_data(value: str | None) -> dict[str, Any]:
    """``--data``: a JSON object given inline, or ``@file`` (``@-``: standard input)."""
    if not value:
        return {}
    if value.startswith("@"):
        name = value[1:]
        try:
            value = sys.stdin.read() if name == "-" else \
                Path(name).read_text()
        except OSError as e:
            raise click.BadParameter(f"cannot read {name}: {e.strerror}") from None
    try:
        data = json.loads(value)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object")
    return data


data_option = click.option(
    "--data", "data", metavar="JSON|@FILE",
    help="More fields of the request body, as a JSON object (or @file, @- for stdin); "
         "the options above win over it.")
