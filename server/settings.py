"""Settings: one frozen, typed object loaded from ``defaults.toml``, a file and the environment.

``defaults.toml`` is the single place where settings are declared and documented; the
``Settings`` fields mirror it, and loading fails loudly on a key that is unknown, missing or of
the wrong type.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from kernels.specs import LANGUAGES

ENV_PREFIX = "CLARITYHIRE_"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    public_url: str
    data_dir: str
    database_url: str
    database_schema: str
    redis_url: str
    redis_prefix: str
    node_id: str
    admin_key: str
    secret_key: str
    token_ttl_seconds: int
    max_token_ttl_seconds: int
    max_message_bytes: int
    log_commit_window_ms: int
    cluster_commit_window_ms: int
    snapshot_every_updates: int
    snapshot_every_seconds: float
    room_idle_seconds: float
    solo_time_limit_seconds: int
    presence_grace_seconds: float
    chat_max_chars: int
    chat_history: int
    chat_burst: int
    chat_per_second: float
    signal_burst: int
    signal_per_second: float
    control_max_payload_bytes: int
    abuse_refusals_per_minute: int
    kernel_languages: str
    kernel_env: str
    kernel_runtime_dir: str
    kernel_pool_size: int
    kernel_idle_seconds: float
    run_timeout_seconds: float
    run_output_max_bytes: int
    run_max_code_bytes: int
    kernel_memory_mb: int
    kernel_cpu_seconds: int
    kernel_max_processes: int
    kernel_max_file_mb: int
    kernel_workspace_mb: int
    kernel_uid: int
    kernel_gid: int
    kernel_uid_base: int
    kernel_slots: int
    kernel_gateway_url: str
    allow_unsandboxed_kernels: bool
    media_mode: str
    media_ice_servers: str
    media_turn_username: str
    media_turn_password: str
    media_ice_addresses: str
    media_record_solo: bool
    media_recordings_dir: str
    media_max_participants: int
    webhook_url: str
    webhook_secret: str
    webhook_attempts: int
    webhook_backoff_seconds: float
    review_model_url: str
    review_model_name: str
    review_model_api_key: str
    review_model_timeout_seconds: float
    web_dir: str
    log_level: str

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in self.kernel_languages.split(",") if x.strip())

    @property
    def web_path(self) -> Path:
        """Where the built web bundle is served from."""
        if self.web_dir:
            return Path(self.web_dir).resolve()
        return Path(__file__).resolve().parent.parent / "web" / "dist"

    @property
    def clustered(self) -> bool:
        """Cluster mode: several nodes share PostgreSQL and Redis (``redis_url`` is set)."""
        return bool(self.redis_url)

    @property
    def commit_window_s(self) -> float:
        """The update log's group-commit window: shorter in a cluster, where other nodes'
        clients see an update only once it is committed."""
        window = self.cluster_commit_window_ms if self.clustered else self.log_commit_window_ms
        return window / 1000

    @property
    def node_name(self) -> str:
        """This node's id in the cluster: the setting, else the host name and port."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def recordings_path(self) -> Path:
        """Where calls are recorded: the setting, else ``<data_dir>/recordings``."""
        if self.media_recordings_dir:
            return Path(self.media_recordings_dir).resolve()
        return self.data_path / "recordings"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def ws_url(self, room_id: str, doc: str = "doc") -> str:
        """The WebSocket address of a room's document (``doc``) or private notes (``notes``)."""
        return f"{self.base_url.replace('http', 'ws', 1)}/rooms/{room_id}/{doc}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def defaults_text() -> str:
    """The shipped ``defaults.toml``: inside the installed package, else the source tree."""
    packaged = resources.files("server").joinpath("defaults.toml")
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).parent.parent / "config" / "defaults.toml").read_text()


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then ``config_file``, then ``CLARITYHIRE_*`` variables, then ``overrides``."""
    values: dict[str, Any] = tomllib.loads(defaults_text())
    types = {f.name: f.type for f in fields(Settings)}
    if set(values) != set(types):
        raise SettingsError(f"defaults.toml and Settings disagree: {set(values) ^ set(types)}")
    if config_file is not None:
        for key, value in tomllib.loads(config_file.read_text()).items():
            values[key] = _check(key, value, types)
    env = os.environ if environ is None else environ
    for key in types:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None:
            values[key] = _parse(key, raw, types[key])
    for key, value in overrides.items():
        if value is not None:
            values[key] = _check(key, value, types)
    settings = Settings(**values)
    _validate(settings)
    return settings


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
}


def _check(key: str, value: Any, types: Mapping[str, Any]) -> Any:
    if key not in types:
        raise SettingsError(f"unknown setting {key!r}")
    type_name = str(types[key])
    valid = isinstance(value, _PYTHON_TYPES[type_name]) and (
        type_name == "bool" or not isinstance(value, bool)
    )
    if not valid:
        raise SettingsError(f"setting {key!r} must be {type_name}, got {value!r}")
    return float(value) if type_name == "float" else value


def _parse(key: str, raw: str, type_name: Any) -> Any:
    if type_name == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be true or false, got {raw!r}")
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError as e:
        raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be {type_name}, got {raw!r}") from e
    return raw


def _validate(s: Settings) -> None:
    if not 0 <= s.log_commit_window_ms <= 50:
        raise SettingsError("log_commit_window_ms must be between 0 and 50")
    if not 0 <= s.cluster_commit_window_ms <= 50:
        raise SettingsError("cluster_commit_window_ms must be between 0 and 50")
    if s.max_message_bytes < 1024:
        raise SettingsError("max_message_bytes must be at least 1024")
    if s.snapshot_every_updates < 1 or s.snapshot_every_seconds <= 0:
        raise SettingsError("snapshot intervals must be positive")
    unknown = set(s.languages) - set(LANGUAGES)
    if unknown:
        known = ", ".join(LANGUAGES)
        raise SettingsError(f"kernel_languages: unknown {sorted(unknown)}; known: {known}")
    if s.media_mode not in ("mesh", "relay"):
        raise SettingsError("media_mode must be mesh or relay")
    if not 2 <= s.media_max_participants <= 16:
        raise SettingsError("media_max_participants must be between 2 and 16")
    if not 1 <= s.webhook_attempts <= 20 or s.webhook_backoff_seconds < 0:
        raise SettingsError("webhook_attempts must be 1 to 20, webhook_backoff_seconds >= 0")
    if s.review_model_url and not s.review_model_url.startswith(("http://", "https://")):
        raise SettingsError("review_model_url must be an http(s) URL, or empty")
    if s.review_model_timeout_seconds <= 0:
        raise SettingsError("review_model_timeout_seconds must be positive")
    if s.redis_url:
        if not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("redis_url must be a redis://, rediss:// or unix:// URL, or empty")
        if not s.database_url.startswith("postgresql"):
            raise SettingsError("cluster mode (redis_url) needs a shared PostgreSQL database_url")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s.redis_prefix):
        raise SettingsError("redis_prefix must be 1 to 64 letters, digits, '_', '.' or '-'")
    if s.node_id and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s.node_id):
        raise SettingsError("node_id must be 1 to 64 letters, digits, '_', '.', ':' or '-'")
    if s.log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError("log_level must be one of debug, info, warning, error")


def resolve_secrets(settings: Settings) -> Settings:
    """Fill an empty ``admin_key`` or ``secret_key`` from ``data_dir``, generating it once."""
    changes = {}
    for key in ("admin_key", "secret_key"):
        if not getattr(settings, key):
            changes[key] = _stored_secret(settings.data_path / key)
    return settings.replace(**changes) if changes else settings


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value
