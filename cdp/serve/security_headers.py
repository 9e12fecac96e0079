"""Response headers every `cdp serve` response gets (a pure ASGI middleware: no per-request
Python objects beyond the header list, so the Profile API's lookups stay cheap).

- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page is shown in a frame
  (clickjacking a logged-in analyst);
- `Cache-Control: no-store` on everything but static assets: API lookups, workspace pages and
  CSV exports carry PII, which no browser or proxy cache should keep;
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`;
- on the workspace (`/workspace`) a full Content-Security-Policy: scripts, styles and requests
  from the server itself only (the vendored htmx and Chart.js, workspace.js), no inline scripts,
  no eval, forms posted to the server only.
"""

from __future__ import annotations

FRAME_CSP = "frame-ancestors 'none'"
WORKSPACE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; object-src 'none'")
CACHEABLE_PREFIXES = ("/workspace/static/", "/static/")   # versioned vendored files, no PII

_COMMON = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin")]
_NO_STORE = (b"cache-control", b"no-store")


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    out = list(_COMMON)
    if path.startswith("/workspace"):
        out.append((b"content-security-policy", WORKSPACE_CSP.encode()))
    else:
        out.append((b"content-security-policy", FRAME_CSP.encode()))
    if not path.startswith(CACHEABLE_PREFIXES):
        out.append(_NO_STORE)
    return out


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = headers_for(scope.get("path", ""))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k for k, _ in extra}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
