"""kimchi: the command-line client of kimchid's REST API.

Exit codes: 0 done, 1 the server refused (API error), 2 usage (bad arguments or
cli.toml), 3 not logged in or not allowed, 4 not found, 5 a task waited for failed or was
cancelled, 6 the server could not be reached (or its certificate not verified), 7 a wait
timed out.  See docs/cli.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kimchi import __version__
from kimchi.cli.client import API_ERROR, CliError
from kimchi.cli.context import Session, json_option, parse_data, session
from kimchi.cli.objects import audit, debugreport, hosts, isos, scan, templates, tokens
from kimchi.cli.render import Output
from kimchi.cli.tasks import events, tasks
from kimchi.cli.vms import vms

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.option("--url", envvar="KIMCHI_URL", metavar="URL",
              help="The server (env KIMCHI_URL; default https://localhost:8001).")
@click.option("--token", envvar="KIMCHI_TOKEN", metavar="TOKEN",
              help="An API token (env KIMCHI_TOKEN); wins over a user and password.")
@click.option("--user", "-u", envvar="KIMCHI_USER", metavar="USER",
              help="Sign in as this Linux user (env KIMCHI_USER).")
@click.option("--password", envvar="KIMCHI_PASSWORD", metavar="PASSWORD",
              help="USER's password (env KIMCHI_PASSWORD; asked on a terminal if unset).")
@click.option("--ca-file", envvar="KIMCHI_CA_FILE", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="Verify the server's certificate with this CA (env KIMCHI_CA_FILE; "
                   "default: the system's trusted CAs).")
@click.option("--timeout", envvar="KIMCHI_TIMEOUT", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="For one request (default 30).")
@click.option("--profile", envvar="KIMCHI_PROFILE", metavar="NAME",
              help="Use [profiles.NAME] of cli.toml over its top level.")
@click.option("--config", envvar="KIMCHI_CONFIG", type=click.Path(dir_okay=False, path_type=Path),
              help="The settings file (default: $XDG_CONFIG_HOME/kimchi/cli.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.version_option(__version__, "--version", "-V", prog_name="kimchi")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, user: str | None,
        password: str | None, ca_file: str | None, timeout: float | None,
        profile: str | None, config: Path | None, as_json: bool) -> None:
    """Manage kimchi's KVM hosts from the command line, through its REST API.

    Settings come from the options, then the environment (KIMCHI_URL, KIMCHI_TOKEN,
    KIMCHI_USER, KIMCHI_PASSWORD, KIMCHI_CA_FILE), then ~/.config/kimchi/cli.toml.

    Exit codes: 0 done, 1 API error, 2 usage, 3 auth, 4 not found, 5 task failed or
    cancelled, 6 server unreachable or certificate not verified, 7 wait timed out.
    """
    given = {"url": url, "token": token, "user": user, "password": password,
             "ca_file": ca_file, "timeout": timeout}
    ctx.obj = Session(given, profile, config, Output(json=as_json))


for group in (vms, tasks, events, hosts, templates, isos, scan, debugreport, tokens, audit):
    cli.add_command(group)


@cli.command()
@json_option
def whoami() -> None:
    """Who the server sees you as (user, groups, role)."""
    s = session()
    me = s.client.get("/session")
    if s.output.json:
        s.output.data(me)
    else:
        s.output.stdout.print(f"{me['username']} ({me['role']}; groups: "
                              f"{', '.join(me.get('groups') or []) or '-'}) at "
                              f"{s.client.settings.url}", markup=False)


@cli.command()
@json_option
def health() -> None:
    """The server's health: Redis, libvirt, workers (exit 1 when not ok)."""
    s = session()
    r = s.client.request("GET", "/health")
    h = r.json()
    s.output.record(h)
    if h.get("status") not in (None, "ok"):
        raise CliError(f"server health: {h.get('status')}", API_ERROR, h)


@cli.command()
@click.argument("method", type=click.Choice(["GET", "POST", "PUT", "DELETE"],
                                            case_sensitive=False))
@click.argument("path")
@click.option("--data", metavar="JSON|@FILE", help="The request body (a JSON object).")
def api(method: str, path: str, data: str | None) -> None:
    """Call any API path and print its JSON answer (like pvesh).

    \b
    kimchi api GET /host/stats
    kimchi api POST /vms/web1/start
    kimchi api PUT /vms/web1 --data '{"memory": {"current": 2048}}'
    """
    if not path.startswith("/"):
        path = "/" + path
    s = session()
    method = method.upper()
    body = parse_data(data) if data else ({} if method in ("POST", "PUT") else None)
    r = s.client.request(method, path, body=body,
                         headers={"Accept": "application/json, */*;q=0.1"})
    if not r.content:
        return
    try:
        s.output.data(r.json())
    except ValueError:
        sys.stdout.write(r.text)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: eval "$(kimchi completion bash)"   (or save it in /etc/bash_completion.d/kimchi)
    zsh:  eval "$(kimchi completion zsh)"
    fish: kimchi completion fish > ~/.config/fish/completions/kimchi.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(cli, {}, "kimchi", "_KIMCHI_COMPLETE")
    click.echo(comp.source())


def main(argv: list[str] | None = None) -> int:
    """The console script: run, turn our errors into a message and an exit code."""
    try:
        cli.main(args=argv, prog_name="kimchi", standalone_mode=False)
    except CliError as e:
        _report(e)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0  # (click itself quiets a reader that has gone: `kimchi events -f | head`)


def _report(e: CliError) -> None:
    if Session.current is not None and Session.current.output.json:
        body = e.body if e.body is not None else {"reason": e.message}
        sys.stderr.write(json.dumps({**body, "exit_code": e.exit_code}) + "\n")
    else:
        sys.stderr.write(f"kimchi: error: {e.message}\n")


if __name__ == "__main__":
    sys.exit(main())
