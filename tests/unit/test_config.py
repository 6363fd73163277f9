"""Configuration: file, environment, and errors that name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimchi import config
from kimchi.errors import ConfigError


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    f = tmp_path / "empty.toml"
    f.write_text("")
    return f


def test_defaults_match_the_contract(empty: Path):
    cfg = config.load(empty, environ={})
    assert cfg.server.http_port == 8000 and cfg.server.https_port == 8001
    assert cfg.server.tls is True and cfg.redis.url == ""
    assert cfg.libvirt.uri == "qemu:///system" and cfg.workers.embedded == 2
    assert cfg.paths.state_dir == "/var/lib/kimchi"
    assert cfg.auth.admin_groups == ("kimchi-admin", "sudo", "wheel")
    assert cfg.features.iso_streaming == "auto"


def test_file_then_environment(tmp_path: Path):
    f = tmp_path / "k.toml"
    f.write_text('[server]\nhttp_port = 9000\n[workers]\nembedded = 0\n'
                 '[auth]\nadmin_groups = ["ops"]\n')
    cfg = config.load(f, environ={"KIMCHI_SERVER_HTTP_PORT": "9100",
                                  "KIMCHI_SERVER_TLS": "false",
                                  "KIMCHI_AUTH_ADMIN_GROUPS": "a, b",
                                  "KIMCHI_FAULT_ANYTHING": "1"})
    assert cfg.server.http_port == 9100  # the environment wins
    assert cfg.server.tls is False
    assert cfg.workers.embedded == 0
    assert cfg.auth.admin_groups == ("a", "b")


def test_every_problem_is_reported_with_its_key(tmp_path: Path):
    f = tmp_path / "k.toml"
    f.write_text('[server]\nhttp_port = 70000\nlog_format = "xml"\n[redis]\nurl = "http://x"\n'
                 '[workers]\nconcurrency = 0\nfoo = 1\n[bogus]\nx = 1\n')
    with pytest.raises(ConfigError) as e:
        config.load(f, environ={"KIMCHI_WORKERS_EMBEDDED": "two", "KIMCHI_NOPE_X": "1"})
    keys = {k for k, _ in e.value.problems}
    assert keys == {"server.http_port", "server.log_format", "redis.url", "workers.concurrency",
                    "workers.foo", "bogus", "workers.embedded", "KIMCHI_NOPE_X"}
    assert all("KCHCONF0001E" in line for line in str(e.value).splitlines())


def test_explicit_missing_file_and_unparsable_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(bad, environ={})


def test_cert_and_key_go_together(empty: Path):
    with pytest.raises(ConfigError, match="server.cert"):
        config.load(empty, environ={"KIMCHI_SERVER_CERT": "/c.pem"})
