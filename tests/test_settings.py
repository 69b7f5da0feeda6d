"""Settings: defaults.toml declares and documents each one; files and environment override."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.settings import Settings, SettingsError, defaults_text, load_settings


def test_every_setting_is_documented_in_defaults() -> None:
    text = defaults_text()
    for field in Settings.__dataclass_fields__:
        match = re.search(rf"((?:^#.*\n)+)(?:^\w+ = .*\n)*^{field} = ", text, re.M)
        assert match, f"{field} has no comment above it in defaults.toml"


def test_environment_overrides_with_types() -> None:
    settings = load_settings(
        environ={"CLARITYHIRE_PORT": "9001", "CLARITYHIRE_ROOM_IDLE_SECONDS": "2.5"}
    )
    assert settings.port == 9001
    assert settings.room_idle_seconds == 2.5
    assert settings.host == "127.0.0.1"


def test_file_then_environment_then_arguments(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('port = 7000\nhost = "0.0.0.0"\nlog_commit_window_ms = 5\n')
    settings = load_settings(config, environ={"CLARITYHIRE_PORT": "7001"}, host="127.0.0.2")
    assert (settings.port, settings.host, settings.log_commit_window_ms) == (7001, "127.0.0.2", 5)


@pytest.mark.parametrize(
    ("config", "environ", "message"),
    [
        ("colour = 'red'\n", {}, "unknown setting 'colour'"),
        ("port = '80'\n", {}, "'port' must be int"),
        ("", {"CLARITYHIRE_PORT": "eighty"}, "CLARITYHIRE_PORT must be int"),
        ("log_commit_window_ms = 500\n", {}, "between 0 and 50"),
    ],
)
def test_bad_settings_are_refused_clearly(
    tmp_path: Path, config: str, environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config)
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(path, environ=environ)
