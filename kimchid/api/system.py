"""/config, /health, /openapi.json and the browser UI's files."""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from twisted.web import static

from kimchi import __version__
from kimchi.config import Config
from kimchi.errors import NotFound
from kimchid import installed
from kimchid.api import xterm
from kimchid.api.openapi import openapi
from kimchid.api.routes import JSON, Call, Reply, RouteTable, clip
from kimchid.model.capabilities import Capabilities

WEBUI = installed.webui()  # package data: a wheel serves the UI it carries
NOVNC = Path("/usr/share/novnc")  # the novnc package: its core/ modules drive the console
PROBLEM_SCHEMA = {
    "type": "object", "required": ["id", "component", "what", "reason", "fix"],
    "properties": {"id": {"type": "string"}, "component": {"enum": ["redis", "libvirt"]},
                   "what": {"type": "string"}, "reason": {"type": "string"},
                   "fix": {"type": "string"}}}
UI_CSP = (b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
          b"style-src 'self'; script-src 'self'; frame-ancestors 'none'")


def register(table: RouteTable, cfg: Config, health: Callable[[], Awaitable[dict[str, Any]]],
             capabilities: Capabilities, webui: Path = WEBUI) -> None:
    async def get_config(call: Call) -> dict[str, Any]:
        return {
            "version": __version__,
            "http_port": cfg.server.http_port,
            "https_port": cfg.server.https_port,
            "auth": "pam",
            "features": {"iso_streaming": cfg.features.iso_streaming},
            "workers": {"embedded": cfg.workers.embedded,
                        "concurrency": cfg.workers.concurrency,
                        "max_attempts": cfg.workers.max_attempts},
        }

    async def get_health(call: Call) -> Reply:
        h = await health()
        return Reply(200 if h["redis"] == "up" else 503, h)

    async def get_openapi(call: Call) -> dict[str, Any]:
        return openapi(table, __version__)

    async def root(call: Call) -> Any:
        accept = (call.header("accept") or "*/*").lower()
        if "text/html" in accept or "*/*" in accept and JSON not in accept:
            return _file(call, webui / "index.html")
        return {"name": "kimchi", "version": __version__, "openapi": "/openapi.json",
                "resources": sorted({r.path.split("/")[1] for r in table.routes
                                     if r.path.count("/") >= 1 and r.path != "/"})}

    async def asset(call: Call) -> Any:
        base, rel = webui.resolve(), call.args["asset"]
        missing = NotFound("KCHAPI0001E", path=clip(call.request.path.decode(
            errors="replace")))
        if "\x00" in rel:  # no file has a NUL in its name (and the OS refuses the path)
            raise missing
        if rel.startswith("novnc/"):  # Debian's noVNC, for the VM console
            base, rel = NOVNC.resolve(), rel[len("novnc/"):]
        if rel.startswith("xterm/"):  # Debian's xterm.js, for the serial console
            if rel == "xterm/xterm.js" and xterm.installed():
                return _bytes(call, xterm.script(), "application/javascript")
            if rel != "xterm/xterm.css":
                raise missing
            base, rel = xterm.XTERM.resolve(), "xterm.css"
        try:
            path = (base / rel).resolve()
            found = base in path.parents and path.is_file()
        except (OSError, ValueError):  # too long a name, a loop of links
            found = False
        if not found:
            raise missing
        _ui_headers(call.request)
        # Twisted's File answers HEAD, Range and If-Modified-Since (QEMU streams with ranges)
        served = static.File(str(path), defaultType="application/octet-stream")
        served.isLeaf = True  # the file itself, whatever the path's depth (novnc/core/rfb.js)
        return served

    table.add("/config", "GET", get_config, "Server configuration", "config",
              response={"type": "object", "required": ["version", "http_port", "https_port",
                                                       "auth", "features"]})
    async def get_capabilities(call: Call) -> dict[str, Any]:
        return await capabilities.get()

    async def refresh_capabilities(call: Call) -> dict[str, Any]:
        return await capabilities.refresh()

    caps_schema = {"type": "object", "required": [
        "libvirt_stream_protocols", "qemu_stream", "screenshot", "system_report_tool",
        "qemu_img", "kvm", "libvirtd_running", "uefi", "secure_boot", "tpm"],
        "properties": {
            "uefi": {"type": "boolean", "description": "VMs may boot UEFI (OVMF)"},
            "secure_boot": {"type": "boolean", "description": "with Secure Boot"},
            "tpm": {"type": "boolean", "description": "VMs may have a TPM 2.0 (swtpm)"},
            "uefi_loaders": {"type": "array", "items": {"type": "string"},
                             "description": "the OVMF builds libvirt offers"}}}
    table.add("/config/capabilities", "GET", get_capabilities, "What this host can do",
              "config", response=caps_schema,
              description="Found by trying, at start-up and on refresh; `[features]` in the "
                          "configuration can force one (listed in `forced`).")
    table.add("/config/capabilities/refresh", "POST", refresh_capabilities,
              "Probe the host again", "config", response=caps_schema)
    table.add("/health", "GET", get_health, "What runs, and whether it answers", "config",
              public=True,
              response={"type": "object", "required": ["status", "redis", "libvirt", "workers",
                                                       "problems"],
                        "properties": {"status": {"enum": ["ok", "degraded"]},
                                       "redis": {"enum": ["up", "down"]},
                                       "libvirt": {"enum": ["up", "down", "unknown"]},
                                       "workers": {"type": "integer"},
                                       "problems": {"type": "array",
                                                    "items": PROBLEM_SCHEMA}}},
              description="503 (same body) while Redis, the bus, is away; `status` is "
                          "`degraded` and `problems` say what is wrong and how to fix it "
                          "whenever something is: Redis or libvirtd down, the default "
                          "network or storage pool missing or stopped. Each problem's `id` "
                          "stays the same while it lasts (`redis`, `libvirt`, "
                          "`network-default`, `pool-default`); a change of them is "
                          "announced by a `service.degraded` or `service.recovered` event.")
    table.add("/openapi.json", "GET", get_openapi, "This API, as OpenAPI 3.1", "config")
    table.add("/", "GET", root, "The browser UI (text/html) or an index (JSON)", "ui",
              raw=True, public=True, produces=(JSON, "text/html"))
    table.add("/ui/<path:asset>", "GET", asset, "The browser UI's files", "ui", raw=True,
              public=True, produces=("*/*",))


def _ui_headers(req: Any) -> None:
    req.setHeader(b"X-Content-Type-Options", b"nosniff")
    req.setHeader(b"Content-Security-Policy", UI_CSP)
    req.setHeader(b"X-Frame-Options", b"DENY")
    req.setHeader(b"Cache-Control", b"no-cache")


def _file(call: Call, path: Path) -> bytes:
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return _bytes(call, path.read_bytes(), ctype)


def _bytes(call: Call, data: bytes, ctype: str) -> bytes:
    req = call.request
    if ctype.startswith("text/") or ctype == "application/javascript":
        ctype += "; charset=utf-8"
    req.setHeader(b"Content-Type", ctype.encode())
    _ui_headers(req)
    return data
