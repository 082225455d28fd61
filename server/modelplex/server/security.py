"""Who may call what: bearer tokens with scopes, TLS and mutual TLS, and the start-up
check that keeps the management API from being open to a network by accident."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from modelplex.errors import ConfigError
from modelplex.server.config import AuthSettings, ServerSettings, TLSSettings

log = logging.getLogger(__name__)

__all__ = ["INFERENCE", "MANAGEMENT", "Authenticator", "Denied", "check_exposure", "server_credentials"]

INFERENCE = "inference"
MANAGEMENT = "management"
SCOPES = {INFERENCE: {INFERENCE}, MANAGEMENT: {INFERENCE, MANAGEMENT}}
"""What each scope grants: management includes inference."""


@dataclass(frozen=True)
class Denied:
    """Why a call is refused: its status code and message (never the token)."""

    code: grpc.StatusCode
    message: str


def parse_tokens(text: str, source: str) -> list[tuple[bytes, frozenset[str]]]:
    """``<token> <scope>[,<scope>]`` lines; ConfigError naming the line for anything else."""
    tokens: list[tuple[bytes, frozenset[str]]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"{source}, line {n}: expected '<token> <scope>[,<scope>]'")
        token, scopes = parts
        granted: set[str] = set()
        for scope in scopes.split(","):
            if scope not in SCOPES:
                raise ConfigError(f"{source}, line {n}: unknown scope {scope!r} (inference, management)")
            granted |= SCOPES[scope]
        if len(token) < 16:
            raise ConfigError(f"{source}, line {n}: a token must have at least 16 characters")
        tokens.append((token.encode(), frozenset(granted)))
    return tokens


class Authenticator:
    """Checks the bearer token of a call against the configured ones, in constant time."""

    def __init__(self, settings: AuthSettings, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._tokens = self._read()

    def _read(self) -> list[tuple[bytes, frozenset[str]]]:
        tokens = []
        s = self._settings
        if s.tokens_file is not None:
            try:
                text = Path(s.tokens_file).read_text()
            except OSError as e:
                raise ConfigError(f"cannot read server.auth.tokens_file {s.tokens_file}: {e.strerror}") from None
            tokens += parse_tokens(text, str(s.tokens_file))
        if s.tokens_env is not None:
            if s.tokens_env not in self._environ:
                raise ConfigError(f"server.auth.tokens_env names {s.tokens_env}, which is not set")
            tokens += parse_tokens(self._environ[s.tokens_env], f"${s.tokens_env}")
        return tokens

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def grants_management(self) -> bool:
        return any(MANAGEMENT in scopes for _, scopes in self._tokens)

    def reload(self) -> None:
        """Read the tokens again (SIGHUP); on an error keep the old ones and log it."""
        try:
            tokens = self._read()
        except ConfigError as e:
            log.error("keeping the previous tokens: %s", e)
            return
        with self._lock:
            self._tokens = tokens
        log.info("reloaded %d token(s)", len(tokens))

    def check(self, metadata: Sequence[tuple[str, str | bytes]] | None, scope: str) -> Denied | None:
        """None if the call may go on; else why not (UNAUTHENTICATED or PERMISSION_DENIED)."""
        if not self._tokens:
            return None
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            return Denied(grpc.StatusCode.UNAUTHENTICATED, "this server needs `authorization: Bearer <token>`")
        value = header.decode() if isinstance(header, bytes) else header
        kind, _, token = value.partition(" ")
        if kind.lower() != "bearer" or not token:
            return Denied(grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata must be `Bearer <token>`")
        presented = token.strip().encode()
        granted: frozenset[str] | None = None
        with self._lock:
            tokens = self._tokens
        for known, scopes in tokens:  # every token compared, in constant time each
            if hmac.compare_digest(known, presented) and granted is None:
                granted = scopes
        if granted is None:
            return Denied(grpc.StatusCode.UNAUTHENTICATED, "the token is not valid")
        if scope not in granted:
            return Denied(grpc.StatusCode.PERMISSION_DENIED, f"the token lacks the {scope} scope")
        return None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: ServerSettings, auth: Authenticator) -> None:
    """Refuse to start with the management API open to the network (see AuthSettings)."""
    if is_loopback(settings.host) or not settings.allow_runtime_loading or auth.grants_management():
        return
    if settings.auth.allow_unauthenticated_management:
        log.warning(
            "LoadModel and UnloadModel are served to anyone who reaches %s:%d without a token "
            "(server.auth.allow_unauthenticated_management = true)",
            settings.host,
            settings.port,
        )
        return
    raise ConfigError(
        f"server.host {settings.host!r} is reachable beyond this machine and runtime loading is on, but no "
        "token has the management scope: configure server.auth (tokens_file or tokens_env), or set "
        "server.allow_runtime_loading = false, or (knowingly) server.auth.allow_unauthenticated_management = true"
    )


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read server.tls.{what} {path}: {e.strerror}") from None


class _Certificates:
    """The TLS files, read at start and again after a SIGHUP (at the next handshake)."""

    def __init__(self, settings: TLSSettings) -> None:
        self._settings = settings
        self._stale = False
        self.initial = self._configuration()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        s = self._settings
        pair = [(_read_pem(s.key_file, "key_file"), _read_pem(s.cert_file, "cert_file"))]
        ca = _read_pem(s.client_ca_file, "client_ca_file") if s.client_ca_file else None
        return grpc.ssl_server_certificate_configuration(pair, root_certificates=ca)

    def reload(self) -> None:
        self._stale = True

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc before each handshake: a new configuration once reloaded, else None."""
        if not self._stale:
            return None
        self._stale = False
        try:
            config = self._configuration()
        except ConfigError as e:
            log.error("keeping the previous certificate: %s", e)
            return None
        log.info("reloaded the TLS certificate")
        return config


def server_credentials(settings: TLSSettings) -> tuple[grpc.ServerCredentials, _Certificates]:
    """Credentials that serve TLS (mutual TLS with a client CA), reloadable with ``.reload()``."""
    certs = _Certificates(settings)
    credentials = grpc.dynamic_ssl_server_credentials(
        certs.initial, certs.fetch, require_client_authentication=settings.client_ca_file is not None
    )
    return credentials, certs
