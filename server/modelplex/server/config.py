"""The server's configuration: a TOML file, validated by typed settings.

Precedence, lowest first: the file (or the built-in demo profile when none is
given), then ``MODELPLEX_<SECTION>__<KEY>`` environment variables (for the
``server`` and ``plugins`` sections), then CLI flags.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelplex.errors import ConfigError

__all__ = [
    "Config",
    "ModelConfig",
    "PluginSettings",
    "ServerSettings",
    "load_config",
    "demo_config_text",
]


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a model's served name may be."""

MAX_INSTANCES = 64
"""Instances one model may have, over all its devices."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TLSSettings(_Strict):
    """The ``[server.tls]`` table: serve TLS, or mutual TLS when ``client_ca_file`` is set.
    The files are read again on SIGHUP (new connections get the new certificate)."""

    cert_file: Path
    """The server's certificate chain (PEM)."""
    key_file: Path
    """The server's private key (PEM)."""
    client_ca_file: Path | None = None
    """CA certificates (PEM) that client certificates must chain to: mutual TLS; a client
    without a valid certificate is refused at the handshake."""


class AuthSettings(_Strict):
    """The ``[server.auth]`` table: bearer tokens (``authorization: Bearer <token>`` metadata).

    A token file has one token a line: ``<token> <scope>[,<scope>]`` with the scopes
    ``inference`` (every task's RPCs, reading the repository) and ``management``
    (LoadModel, UnloadModel; it includes ``inference``); ``#`` starts a comment. With no
    tokens configured, no call needs one. Health checks never need one."""

    tokens_file: Path | None = None
    """A token file (above); re-read on SIGHUP."""
    tokens_env: str | None = None
    """The name of an environment variable that holds tokens in the token-file format
    (e.g. filled from a Kubernetes Secret)."""
    allow_unauthenticated_management: bool = False
    """Serve LoadModel/UnloadModel with no management token although the server listens
    beyond loopback. Refused at start otherwise; a warning is logged when set."""


class TracingSettings(_Strict):
    """The ``[server.tracing]`` table: OpenTelemetry spans per RPC (needs ``modelplex[tracing]``)."""

    enabled: bool = False
    exporter: Literal["otlp", "console", "global"] = "otlp"
    """``otlp`` (to ``endpoint``, or the OTEL_EXPORTER_OTLP_* environment), ``console``, or
    ``global``: the tracer provider the embedding program installed."""
    endpoint: str | None = None
    """The OTLP collector, e.g. ``http://otel-collector:4317``."""
    service_name: str = "modelplex"


class ServerSettings(_Strict):
    """The ``[server]`` table."""

    host: str = "127.0.0.1"
    """Interface to listen on; ``0.0.0.0`` for all."""
    port: int = Field(default=50051, ge=0, le=65535)
    """TCP port; 0 picks a free one (it is logged)."""
    max_message_mb: float = Field(default=64.0, gt=0, le=2047)
    """Largest request or response message, in MiB; larger ones get RESOURCE_EXHAUSTED."""
    grace_period_s: float = Field(default=10.0, ge=0)
    """On shutdown, how long in-flight calls may take to finish. The process exits at most
    ``shutdown_bound_s`` after it, even if a plugin's work has not returned."""
    shutdown_bound_s: float = Field(default=5.0, ge=0, le=600)
    """How long after the grace period the process waits for model work (a forward pass in a
    plugin, which cannot be interrupted) before it exits anyway."""
    allow_runtime_loading: bool = True
    """Whether LoadModel and UnloadModel are served (FAILED_PRECONDITION when off)."""
    allow_download: bool = False
    """Whether pretrained weights missing from the local cache may be downloaded at load time."""
    weights_roots: list[Path] = []
    """Folders under which LoadModel may name checkpoint files at run time (symlinks resolved);
    a path elsewhere is PERMISSION_DENIED. Empty: LoadModel may load by path from nowhere
    (pretrained and random weights only). The config file's own models are not confined."""
    max_models: int = Field(default=64, ge=1, le=10_000)
    """Models loaded at once; LoadModel beyond it is RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: int | None = Field(default=None, gt=0)
    """Calls in progress at once before new ones get RESOURCE_EXHAUSTED; None for no limit."""
    max_concurrent_streams: int | None = Field(default=1024, gt=0)
    """Streaming calls in progress at once, over all models (RESOURCE_EXHAUSTED beyond)."""
    max_streams_per_model: int | None = Field(default=256, gt=0)
    """Streaming calls in progress at once on one model (RESOURCE_EXHAUSTED beyond)."""
    max_stream_duration_s: float | None = Field(default=3600.0, gt=0)
    """The longest a streaming call may last before it ends with DEADLINE_EXCEEDED."""
    keepalive_time_s: float = Field(default=60.0, gt=0)
    """How often the server pings an idle connection to find dead clients."""
    max_connection_age_s: float | None = Field(default=None, gt=0)
    """Close connections older than this (after ``max_connection_age_grace_s``), so that
    clients behind an L4 balancer reconnect and spread over new replicas; None: never."""
    max_connection_age_grace_s: float = Field(default=30.0, ge=0)
    tls: TLSSettings | None = None
    auth: AuthSettings = AuthSettings()
    tracing: TracingSettings = TracingSettings()
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics over HTTP on this port (on ``host``); None: off; 0 picks one."""
    front_doors: dict[str, int] = {}
    """HTTP servers that tasks bring, by name, each on its port (on ``host``; 0 picks one):
    ``openai = 8000`` serves the OpenAI-compatible API of the text-generation models (needs
    ``modelplex[openai]``). None by default."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object a line (time, level, logger, message, and request fields)."""


class PluginSettings(_Strict):
    """The ``[plugins]`` table: which entry points of group ``modelplex`` are loaded."""

    autoload: bool = True
    """Load every installed plugin. When false, only those named in ``allow`` are loaded."""
    allow: list[str] = []
    """Entry-point names to load; empty means all (when autoload is on)."""
    block: list[str] = []
    """Entry-point names never to load."""
    strict: bool = False
    """Refuse to start if any plugin fails to import or register."""


class ModelConfig(_Strict):
    """One ``[[models]]`` entry: a model to load at startup.

    Besides the keys below, an entry takes its task's serving settings as keys of its own
    (``max_batch_size``, ``max_queue_size``, ``max_new_tokens``...): they are validated by
    the task's settings model when the model is planned, so that an unknown key is an error
    naming the keys the task takes."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    spec: str = Field(max_length=128)
    """The spec a plugin registered, e.g. ``"resnet18"``."""
    name: str = Field(default="", max_length=128)
    """The name clients use; defaults to the spec name."""
    variant: str | None = None
    """The spec's variant; None for its default."""
    weights: str = "pretrained"
    """``"pretrained"``, ``"random"``, or the path of a local checkpoint file or folder."""
    devices: list[str] = ["auto"]
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (least-loaded GPU by free memory, else cpu)."""
    instances_per_device: int = Field(default=1, ge=1, le=64)
    """Copies of the model on each listed device, each with its own worker thread."""
    cpu_threads: int | None = Field(default=None, ge=1, le=1024)
    """torch intra-op threads of each of this model's CPU instances. None: the cores (or
    OMP_NUM_THREADS, when set) divided by the model's CPU instances. Each instance thread keeps
    its own OpenMP team, so when several CPU models share a server, keep their instances x
    threads within the cores (measured: two 2-thread teams on 2 cores slow each forward by
    ~24%; docs/benchmarks.md)."""
    allow_download: bool | None = None
    """Whether this model's pretrained weights may be downloaded when missing from the local
    cache; None follows ``server.allow_download``."""
    settings: dict[str, Any] = {}
    """The spec's own settings, validated by its plugin's settings model."""

    @property
    def task_settings(self) -> dict[str, Any]:
        """The keys of this entry that are not the ones above: the task's serving settings."""
        return dict(self.model_extra or {})

    @field_validator("devices")
    @classmethod
    def _devices_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one device")
        return v

    @model_validator(mode="after")
    def _bounded_instances(self) -> ModelConfig:
        # Each instance is a thread and a copy of the weights: one LoadModel call must not ask for hundreds.
        total = len(self.devices) * self.instances_per_device
        if total > MAX_INSTANCES:
            raise ValueError(
                f"{len(self.devices)} devices x {self.instances_per_device} instances_per_device = {total} "
                f"instances; at most {MAX_INSTANCES} per model"
            )
        return self

    @model_validator(mode="after")
    def _safe_name(self) -> ModelConfig:
        # Names reach logs, health service names and metric labels: no control characters,
        # no path separators, no bidi overrides.
        if not MODEL_NAME.fullmatch(self.served_name):
            raise ValueError(
                f"model name {self.served_name[:64]!r} must be 1-128 characters of A-Z a-z 0-9 . _ - "
                "starting with a letter or digit (set `name`)"
            )
        return self

    @property
    def served_name(self) -> str:
        return self.name or self.spec


class Config(_Strict):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    plugins: PluginSettings = PluginSettings()
    models: list[ModelConfig] = []

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for m in v:
            if m.served_name in seen:
                raise ValueError(f"two models are named {m.served_name!r}; set a distinct `name`")
            seen.add(m.served_name)
        return v


def demo_config_text() -> str:
    """The built-in demo profile: small models with random weights, no model hub needed."""
    return resources.files("modelplex").joinpath("demo.toml").read_text()


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in environ.items():
        if not key.startswith("MODELPLEX_") or "__" not in key:
            continue
        section, _, field = key[len("MODELPLEX_") :].lower().partition("__")
        if section not in ("server", "plugins"):
            continue
        parsed: Any = value
        if section == "plugins" and field in ("allow", "block"):
            parsed = [s.strip() for s in value.split(",") if s.strip()]
        out.setdefault(section, {})[field] = parsed
    return out


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read ``path`` (or the demo profile), apply environment and CLI overrides, validate.

    Raises ConfigError naming the file and every bad key.
    """
    if path is None:
        text, source = demo_config_text(), "the built-in demo profile"
    else:
        try:
            text, source = Path(path).read_text(), str(path)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text: {e.reason} at byte {e.start}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source} is not valid TOML: {e}") from None
    env = _env_overrides(os.environ if environ is None else environ)
    if env:
        source += " with MODELPLEX_<SECTION>__<KEY> environment overrides"
    layers = [env, overrides or {}]
    for layer in layers:
        for section, values in layer.items():
            if section == "models":
                data["models"] = list(values)  # type: ignore[arg-type]
                continue
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"invalid configuration in {source}:\n  {section}: must be a table ([{section}])")
            table.update(values)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
