"""The plain-HTTP port when HTTPS is on: everything moves to HTTPS, but public files.

``/health`` (for monitors) and the UI's files under ``/ui/`` (public, and what
the ``qemu_stream`` probe asks QEMU to read) are answered here as well; any other
request is redirected (``301`` for GET/HEAD, ``308`` otherwise, so the method
and body are kept) and never served in clear text.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from kimchid.api.app import security_headers


class ToHttps(Resource):
    isLeaf = True

    def __init__(self, https_port: int, app: Resource) -> None:
        super().__init__()
        self.https_port = https_port
        self.app = app

    def render(self, request: IRequest) -> Any:
        path = request.path
        if path == b"/health" or path.startswith(b"/ui/"):
            request.prepath, request.postpath = [], path.split(b"/")[1:]
            return self.app.render(request)
        host = (request.getRequestHostname() or b"localhost").decode(errors="replace")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = "" if self.https_port == 443 else f":{self.https_port}"
        target = f"https://{host}{port}{request.uri.decode(errors='replace')}"
        security_headers(request)
        request.setResponseCode(301 if request.method in (b"GET", b"HEAD") else 308)
        request.setHeader(b"Location", target.encode())
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return f"Moved to {target}\n".encode()
