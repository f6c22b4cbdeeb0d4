"""Who may call the service, and through which name: the decisions behind its request guard.

    SEQTUNE_API_TOKEN=... bentoml serve service.service:Seqtune --host 0.0.0.0

Pure functions (the ASGI middleware in `seqtune.serving.guard` applies them; docs/security.md
lists each guarantee with its test):

- `load_token`: the optional bearer token, from `SEQTUNE_API_TOKEN` or from the file named by
  `SEQTUNE_API_TOKEN_FILE` (setting both is an error: neither silently wins);
- `check_bind`: a service reachable beyond loopback must have a token;
- `bound_host`: the address the server really listens on (`bentoml serve --host` and the
  worker's socket override `serve.host`);
- `trusted_host_names` / `host_allowed`: the Host header must name this service (DNS rebinding);
- `bearer_ok`, `needs_token`, `is_json`: per-request checks.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping

from seqtune.secret_source import read_secret

TOKEN_ENV = "SEQTUNE_API_TOKEN"
TOKEN_FILE_ENV = "SEQTUNE_API_TOKEN_FILE"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PROBES = frozenset({"/livez", "/readyz", "/healthz"})
"""Open to anyone with any Host: orchestrators probe by pod IP and carry no token."""
ANY_HOST = "*"
"""In `serve.trusted_hosts`: accept every Host header (turns the check off)."""
JSON_TYPE = "application/json"
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})  # every interface: no name of its own


class SecurityConfigError(ValueError):
    """A token or bind setting the service must not start with; the message says the fix."""


def load_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """The API token, or None when neither variable is set. A variable set to an empty value,
    an unreadable or empty file, or a token a header cannot carry is an error, not "no auth":
    whoever set it meant the service to be protected."""
    found = read_secret(environ, TOKEN_ENV, TOKEN_FILE_ENV, what="token", error=SecurityConfigError)
    if found is None:
        return None
    token, source = found
    if not token:
        raise SecurityConfigError(f"{source}: the token is empty")
    # Visible ASCII without spaces: what an `Authorization: Bearer` header can carry intact.
    if not all("!" <= c <= "~" for c in token):
        raise SecurityConfigError(f"{source}: the token may hold only visible ASCII characters, no spaces")
    return token


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine (localhost, 127/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (SecurityConfigError)."""
    if token is None and not is_loopback(host):
        raise SecurityConfigError(
            f"the service would listen on {host or 'every interface'}, beyond this machine, without "
            f"authentication: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, a file holding it) to a secret token "
            f"clients send as `Authorization: Bearer <token>`, or bind 127.0.0.1 (params.yaml serve.host)"
        )


def bound_host(default: str) -> str | None:
    """The host the server listens on, from the running BentoML command: in a worker, its
    socket's address (whatever chose it); under `bentoml serve`, `--host`/`BENTOML_HOST` if
    given; without a command (an in-process `bentoml.serve`, a plain import) `default`
    (serve.host). None under commands that serve nothing (`bentoml build`): there is no bind
    to check, and every server's worker checks its real socket anyway."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return default
    fd = ctx.params.get("fd")
    if fd is not None:
        return socket_host(int(fd))
    if "host" in ctx.params:
        return ctx.params["host"] or default
    return None


def socket_host(fd: int) -> str:
    """The local address of the listening socket `fd` (a duplicate is inspected: closing it
    leaves the worker's socket open)."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        name = sock.getsockname()
    return name[0] if isinstance(name, tuple) else str(name)


def _name(value: str) -> str:
    return value.strip().strip("[]").rstrip(".").lower()


def trusted_host_names(bind_hosts: Iterable[str | None], extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a Host header may carry: the loopback names, each bound host that is a real
    address (not 0.0.0.0 / ::), and `extra` (serve.trusted_hosts)."""
    names = set(LOOPBACK_NAMES)
    names.update(_name(h) for h in bind_hosts if h is not None and h.strip() not in _WILDCARD_BINDS)
    names.update(_name(h) if h != ANY_HOST else ANY_HOST for h in extra)
    return frozenset(names)


def host_name(header: str) -> str | None:
    """The host part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`), lower case;
    None when malformed. The port is not compared: the connection already reached this port."""
    value = header.strip()
    if value.startswith("["):
        name, closed, rest = value[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") > 1:
        return None  # an IPv6 address without brackets
    else:
        name, _, port = value.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    return _name(name)  # compared for equality with the allowed names: nothing else to vet


def host_allowed(headers: list[str], allowed: frozenset[str]) -> bool:
    """Exactly one Host header, naming an allowed host (or `*` allowed)."""
    if len(headers) != 1:
        return False  # none (HTTP/1.0) or several (RFC 9112 says answer 400)
    name = host_name(headers[0])
    return name is not None and (ANY_HOST in allowed or name in allowed)


def needs_token(path: str) -> bool:
    """Everything but the probes and the static page (`/`, `/ui/...`: no data in them; the
    page sends the token on its own API calls) needs the token, when one is set."""
    return not (path in PROBES or path == "/" or path.startswith("/ui/"))


def bearer_ok(authorization: bytes | None, token: str) -> bool:
    """Whether an `Authorization` header value is `Bearer <token>` (scheme in any case, as
    RFC 9110 says), compared in constant time."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials.strip(), token.encode("ascii"))


def is_json(content_type: bytes | None) -> bool:
    """`application/json`, parameters (`; charset=utf-8`) allowed, any case. Everything else,
    no Content-Type included, is refused: text/plain, form and missing types are what a web
    page may POST cross-origin without a CORS preflight."""
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == JSON_TYPE.encode()
