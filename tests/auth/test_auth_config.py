"""The [auth] section: defaults, the environment, and bad values named by their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimchi import config
from kimchi.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "kimchi.toml.example"


def test_defaults(tmp_path: Path):
    (tmp_path / "k.toml").write_text("")
    auth = config.load(tmp_path / "k.toml", environ={}).auth
    assert auth.pam_service == "kimchi"
    assert auth.admin_groups == ("kimchi-admin", "sudo", "wheel")
    assert auth.pam_threads == 4 and auth.pam_queue == 64
    assert auth.session_idle_minutes == 30 and auth.session_max_hours == 12
    assert auth.throttle_free_attempts == 5
    assert auth.throttle_base_delay == 1 and auth.throttle_max_delay == 300
    assert auth.throttle_window == 900 and auth.allowed_origins == ()


def test_the_example_file_lists_every_auth_key_with_its_default(tmp_path: Path):
    text = EXAMPLE.read_text()
    section = text.split("[auth]", 1)[1].split("\n[", 1)[0]
    for key in config.AuthConfig.__dataclass_fields__:
        assert f"\n{key} = " in section, key
    assert config.load(EXAMPLE, environ={}).auth == config.AuthConfig()


def test_file_and_environment(tmp_path: Path):
    f = tmp_path / "k.toml"
    f.write_text('[auth]\npam_service = "login"\nsession_idle_minutes = 5\n'
                 'allowed_origins = ["https://kimchi.example.com"]\n')
    auth = config.load(f, environ={"KIMCHI_AUTH_PAM_THREADS": "2",
                                   "KIMCHI_AUTH_SESSION_MAX_HOURS": "0.5"}).auth
    assert auth.pam_service == "login" and auth.session_idle_minutes == 5.0
    assert auth.pam_threads == 2 and auth.session_max_hours == 0.5
    assert auth.allowed_origins == ("https://kimchi.example.com",)


@pytest.mark.parametrize(("line", "key"), [
    ("pam_threads = 0", "auth.pam_threads"),
    ("pam_queue = -1", "auth.pam_queue"),
    ("session_idle_minutes = 0", "auth.session_idle_minutes"),
    ("session_max_hours = -2", "auth.session_max_hours"),
    ("throttle_free_attempts = -1", "auth.throttle_free_attempts"),
    ("throttle_max_delay = 0", "auth.throttle_max_delay"),
    ('pam_service = "../passwd"', "auth.pam_service"),
    ('pam_service = ""', "auth.pam_service"),
    ('allowed_origins = ["kimchi.example.com"]', "auth.allowed_origins"),
    ('allowed_origins = ["https://kimchi.example.com/ui"]', "auth.allowed_origins"),
    ('pam_threads = "four"', "auth.pam_threads"),
])
def test_bad_values_name_their_key(tmp_path: Path, line: str, key: str):
    f = tmp_path / "k.toml"
    f.write_text(f"[auth]\n{line}\n")
    with pytest.raises(ConfigError) as e:
        config.load(f, environ={})
    assert [k for k, _ in e.value.problems] == [key]
