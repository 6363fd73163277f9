"""The CLI's settings, its SSE reading and its resuming, without a server (fast).

The same behaviour against a real kimchid is in tests/integration/test_cli.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kimchi.cli.client import (
    Event,
    StreamLost,
    _cause,
    _parse_sse,
    accept_language,
    follow,
)
from kimchi.cli.settings import DEFAULT_URL, SettingsError, config_path, resolve

# -- settings ---------------------------------------------------------------------------


def test_the_file_is_found_under_xdg_config_home_or_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/kimchi/cli.toml")
    assert config_path({"HOME": "/h"}).name == "cli.toml"
    assert config_path({"KIMCHI_CONFIG": "/etc/k.toml", "XDG_CONFIG_HOME": "/x"}) == \
        Path("/etc/k.toml")


def test_flags_and_environment_win_over_the_file_and_a_profile_over_its_top(
        tmp_path: Path) -> None:
    f = tmp_path / "cli.toml"
    f.write_text('url = "https://a:8001"\nuser = "alice"\ntimeout = 5\n'
                 '[profiles.lab]\nurl = "lab:8001/"\nca_file = "/ca.pem"\n')
    s, _ = resolve({"url": None, "user": "bob"}, None, f)
    assert (s.url, s.user, s.timeout) == ("https://a:8001", "bob", 5.0)
    s, _ = resolve({}, "lab", f)
    assert (s.url, s.user, s.ca_file, s.verify) == ("https://lab:8001", "alice", "/ca.pem",
                                                    "/ca.pem")
    s, warnings = resolve({}, None, tmp_path / "none.toml")
    assert (s.url, s.token, warnings) == (DEFAULT_URL, None, [])


@pytest.mark.parametrize("text, words", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ("url = 1\n", "url must be a string"),
    ("timeout = -1\n", "timeout must be a positive number"),
    ("url = \n", "not valid TOML"),
    ('[profiles.lab]\nusr = "x"\n', "[profiles.lab]: unknown key 'usr'"),
])
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "cli.toml"
    f.write_text(text)
    with pytest.raises(SettingsError, match=None) as e:
        resolve({}, "lab" if "profiles" in text else None, f)
    assert words in str(e.value) and str(f) in str(e.value)


def test_a_missing_profile_and_a_readable_secret_are_said(tmp_path: Path) -> None:
    f = tmp_path / "cli.toml"
    f.write_text('token = "kch_x"\n')
    with pytest.raises(SettingsError, match="no profile 'lab'"):
        resolve({}, "lab", f)
    f.chmod(0o644)
    assert "chmod 600" in resolve({}, None, f)[1][0]
    f.chmod(0o600)
    assert resolve({}, None, f)[1] == []


def test_the_locale_becomes_accept_language() -> None:
    assert accept_language({"LANG": "pt_BR.UTF-8"}) == "pt-BR"
    assert accept_language({"LC_ALL": "zh_CN.utf8", "LANG": "en_US"}) == "zh-CN"
    assert accept_language({"LANG": "C.UTF-8"}) is None
    assert accept_language({}) is None


def test_socket_errors_are_said_in_their_own_words() -> None:
    class Wrapped(Exception):
        pass

    inner = OSError("HTTPSConnection(host='x', port=1): Failed to establish a new "
                    "connection: [Errno 111] Connection refused")
    assert _cause(Wrapped(inner)) == "Connection refused"


# -- SSE --------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, text: str) -> None:
        self.lines = text.encode().split(b"\n")

    def iter_lines(self, chunk_size: int = 0) -> Iterator[bytes]:
        yield from self.lines


def test_sse_frames_become_events_and_a_drop_notice_ends_the_stream() -> None:
    text = ('retry: 1000\n\n: keepalive\n\nid: 1-0\ndata: {"id": "1-0", "type": "a"}\n\n'
            'data: {"type": "reset"}\n\nid: 2-0\ndata: {"id": "2-0",\ndata: "type": "b"}\n\n'
            ": dropped: too slow\n\nid: 3-0\ndata: {}\n\n")
    got: list[Event] = []
    with pytest.raises(StreamLost, match="too slow"):
        for ev in _parse_sse(FakeResponse(text)):  # type: ignore[arg-type]
            got.append(ev)
    assert [(e.id, e.data["type"]) for e in got] == [("1-0", "a"), (None, "reset"),
                                                     ("2-0", "b")]


class ScriptedServer:
    """Answers each SSE connection with the next script: events, then a loss."""

    def __init__(self, *connections: list[str]) -> None:
        self.connections = list(connections)
        self.asked: list[str | None] = []

    def sse(self, since: str | None, types: Any, task: Any, timeout: float) -> Iterator[Event]:
        self.asked.append(since)
        if not self.connections:
            raise KeyboardInterrupt  # the test is over
        for i in self.connections.pop(0):
            yield Event(i, {"id": i, "type": "x"})
        raise StreamLost("gone")


def test_follow_resumes_after_the_last_event_and_drops_a_replayed_one() -> None:
    # the second connection replays 1-2 (as a server whose since is off by one would)
    server = ScriptedServer(["1-1", "1-2"], ["1-2", "1-3"], [], ["2-0"])
    lost: list[tuple[str, str | None]] = []
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for ev in follow(server, "1-0", on_lost=lambda r, last: lost.append((r, last)),  # type: ignore[arg-type]
                         retry=lambda n: 0.0):
            seen.append(ev.id)
    assert seen == ["1-1", "1-2", "1-3", "2-0"]
    assert server.asked == ["1-0", "1-2", "1-3", "1-3", "2-0"]
    assert lost[0] == ("gone", "1-2")


def test_follow_gives_up_at_its_deadline() -> None:
    import time

    server = ScriptedServer(*[[] for _ in range(1000)])
    with pytest.raises(TimeoutError):
        for _ in follow(server, "1-0", deadline=time.monotonic() + 0.2,  # type: ignore[arg-type]
                        retry=lambda n: 0.05):
            pass
