"""``GET /metrics``: Prometheus' text format, for an admin or an address of ``[metrics] allow``."""

from __future__ import annotations

from collections.abc import Iterable

from kimchid.api.routes import Call, RouteTable
from kimchid.metrics import CONTENT_TYPE, Metrics, address_check


def register(table: RouteTable, metrics: Metrics, allow: Iterable[str]) -> None:
    async def scrape(call: Call) -> bytes:
        body = await metrics.scrape()
        call.request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        return body

    table.add(
        "/metrics", "GET", scrape, "Prometheus metrics", "operators", raw=True,
        produces=("text/plain",), let_in=address_check(allow),
        media={CONTENT_TYPE.replace("; charset=utf-8", ""): {"type": "string"}},
        description="Prometheus' text format 0.0.4: queues, workers, tasks by kind and "
                    "status, task durations, the event stream and its watchers, HTTP "
                    "requests and latency by route, failed logins, each host's libvirt "
                    "connection and VMs by state (docs/metrics.md names every metric). "
                    "For an admin (best an API token: `Authorization: Bearer kch_...`), "
                    "or without a login from an address of `[metrics] allow`; anyone else "
                    "gets 401 (no credentials) or 403 (not an admin).")
