"""The HTTP API: the route table and the Klein app built from it."""

from __future__ import annotations

from typing import Any

from kimchid.api import (
    audit,
    auth,
    console,
    debugreports,
    distros,
    events,
    host,
    hosts,
    i18n,
    isos,
    metrics,
    networks,
    principals,
    serial,
    snapshots,
    storage,
    system,
    tasks,
    templates,
    vmdevices,
    vms,
)
from kimchid.api.app import build
from kimchid.api.routes import RouteTable

__all__ = ["build", "make_table"]


def make_table(svc: Any) -> RouteTable:
    """Every route of the daemon, bound to the services of ``svc`` (a Kimchid)."""
    table = RouteTable()
    system.register(table, svc.cfg, svc.health.report, svc.capabilities)
    auth.register(table, svc.gate, svc.preferences)
    audit.register(table, svc.audit)
    tasks.register(table, svc.tasks, svc.events.cursor, svc.access)
    isos.register(table, svc.isos, svc.hosts)
    vms.register(table, svc.hosts, svc.screenshots, svc.vm_creator, svc.vm_cloner,
                 svc.access, svc.vm_migrator, svc.vm_templater)
    hosts.register(table, svc.hosts, svc.tasks)
    templates.register(table, svc.templates, svc.template_downloads)
    console.register(table, svc.access)
    serial.register(table, svc.access, svc.serial_consoles)
    snapshots.register(table, svc.tasks, svc.access)
    vmdevices.register(table, svc.access)
    debugreports.register(table, svc.debugreports, svc.hosts)
    host.register(table, svc.host, svc.hosts)
    storage.register(table, svc.hosts, svc.transfers)
    networks.register(table, svc.hosts)
    principals.register(table)
    distros.register(table, svc.templates)
    metrics.register(table, svc.metrics, svc.cfg.metrics.allow)
    i18n.register(table)
    events.register(table, svc.events, svc.reactor, svc.cfg.events.client_buffer,
                    svc.cfg.events.page_size, svc.access, svc.tasks)
    return table
