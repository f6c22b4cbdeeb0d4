"""The service's request guard: ASGI middleware in front of every route BentoML serves.

    Seqtune.add_asgi_middleware(RequestGuard, post_routes={...}, max_body=..., ...)

In order, for every HTTP request but the probes (`/livez`, `/readyz`, `/healthz`):
1. the Host header must name this service (400 otherwise): a DNS-rebinding page reaches a
   loopback service under its own domain name, never under these;
2. with a token set, `Authorization: Bearer <token>` (401 + `WWW-Authenticate: Bearer`
   otherwise), on everything but the static page;
3. on the JSON POST routes: `Content-Type: application/json` only (415), a body no larger than
   any valid request (413, before parsing), and `Retry-After` on every 503 (BentoML's batcher
   sheds requests that queued past `serve.max_latency_ms` with a bare 503).
The decisions are `seqtune.serving.security`'s pure functions.
"""

from __future__ import annotations

import json

from seqtune.serving import security

_JSON_ONLY = (f"send Content-Type: {security.JSON_TYPE} (parameters such as '; charset=utf-8' allowed); "
              "other types, a missing one included, are refused")


class RequestGuard:
    """See the module docstring. `token`: None = no authentication (a loopback bind only:
    `security.check_bind` refuses the rest before anything serves)."""

    def __init__(self, app, *, post_routes: set[str], max_body: int, too_large: str, retry_after_s: int,
                 token: str | None, trusted_hosts: frozenset[str]):
        self.app, self.post_routes, self.max_body, self.too_large = app, post_routes, max_body, too_large
        self.retry_after_s, self.token, self.trusted_hosts = retry_after_s, token, trusted_hosts

    async def __call__(self, scope, receive, send):
        # Lifespan passes; BentoML serves no websocket routes (Starlette closes any attempt).
        if scope["type"] != "http" or scope["path"] in security.PROBES:
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        hosts = [v.decode("latin-1") for k, v in headers if k.lower() == b"host"]
        if not security.host_allowed(hosts, self.trusted_hosts):
            shown = hosts[0] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return await reply(send, 400, f"untrusted Host {shown!r}: add the name this service is reached by "
                                          "to params.yaml serve.trusted_hosts")
        if self.token is not None and security.needs_token(scope["path"]):
            auth = next((v for k, v in headers if k.lower() == b"authorization"), None)
            if not security.bearer_ok(auth, self.token):
                # RFC 6750: a wrong token says invalid_token; a missing one just names the scheme.
                challenge = b'Bearer realm="seqtune"' + (b', error="invalid_token"' if auth is not None else b"")
                return await reply(send, 401, "send the service's token: Authorization: Bearer <token>",
                                   extra_headers=((b"www-authenticate", challenge),))
        if scope["method"] != "POST" or scope["path"] not in self.post_routes:
            return await self.app(scope, receive, send)
        ctype = next((v for k, v in headers if k.lower() == b"content-type"), None)
        if not security.is_json(ctype):
            got = "none" if ctype is None else repr(ctype.decode("latin-1"))
            return await reply(send, 415, f"{_JSON_ONLY}; got {got}", accepted=[security.JSON_TYPE])
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await reply(send, 413, f"request body over {self.max_body} bytes: {self.too_large}")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        # One spelling for BentoML, which picks its deserializer by the exact media type.
        scope = {**scope, "headers": [*((k, v) for k, v in headers if k.lower() != b"content-type"),
                                      (b"content-type", security.JSON_TYPE.encode())]}
        await self.app(scope, replay, self._retry_after_on_503(send))

    def _retry_after_on_503(self, send):
        """`send` with `Retry-After` added to a 503 response that lacks one."""

        async def wrapped(message):
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", str(self.retry_after_s).encode()))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


async def reply(send, status: int, message: str, *, extra_headers: tuple[tuple[bytes, bytes], ...] = (),
                **fields) -> None:
    """A JSON `{"error": message, **fields}` response."""
    payload = json.dumps({"error": message, **fields}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": payload})
