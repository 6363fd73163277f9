"""Shell completion: click's, with names fetched from the server as one types."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
from click.shell_completion import CompletionItem

from kimchi.cli.client import Client
from kimchi.cli.settings import resolve


def names(ctx: click.Context, path: str, incomplete: str, key: str = "name",
          **params: Any) -> list[CompletionItem]:
    """``key`` of each object at ``path`` starting with ``incomplete``; nothing on any
    error (completion must never print one or hang: a 3 s limit)."""
    root = ctx.find_root().params
    given = {k: root.get(k) for k in ("url", "token", "user", "password", "ca_file")}
    try:
        settings, _ = resolve(given, root.get("profile"), root.get("config"))
        if settings.user and not settings.password and not settings.token:
            return []  # no prompting in the middle of a completion
        client = Client(dataclasses.replace(settings, timeout=3.0))
        found = client.get(path, **params)
    except Exception:  # noqa: BLE001 - completion stays silent
        return []
    return [CompletionItem(str(o[key])) for o in found
            if isinstance(o, dict) and str(o.get(key, "")).startswith(incomplete)]
