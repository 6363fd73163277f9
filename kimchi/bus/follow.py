"""A job that runs another job and follows it: the parent (a ``vm.clone`` on the daemon's
runner) queues a child (its ``vm.clone.disks`` on a worker of the VM's host), passes the
child's progress on as its own, stops it when the parent is cancelled, and goes on as soon
as it ends.

The child's task id is :func:`child_id` of the parent's task and attempt: known again by
the next attempt after a crash, which stops the lost attempt's child before it starts its
own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from kimchi import bus
from kimchi.bus.context import JobContext
from kimchi.bus.sync import SyncBus
from kimchi.bus.text import TaskText

log = logging.getLogger(__name__)


class ChildGone(Exception):
    """The child's task is not there any more (trimmed, or Redis lost it)."""


def child_id(task_id: str, attempt: int | str) -> str:
    """The id of the child job of one attempt of ``task_id``."""
    return hashlib.md5(f"{task_id}:{attempt}".encode()).hexdigest()


def last_event(sync: SyncBus) -> str:
    """The id of the event stream's newest entry ("0-0" when empty)."""
    newest = sync.client.xrevrange(sync.keys.events, count=1)
    return str(newest[0][0]) if newest else "0-0"


def child_event(sync: SyncBus, child: str, since: str, block_ms: int) -> str:
    """Block until an event of ``child`` comes after ``since`` (at most ``block_ms``);
    returns the id to read from next.  Other tasks' events are skipped without a wake-up
    of the caller."""
    deadline = time.monotonic() + block_ms / 1000
    while True:
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            return since
        reply = sync.client.xread({sync.keys.events: since}, count=500, block=left)
        for _stream, entries in reply or ():
            for eid, fields in entries:
                since = eid
                if fields.get("task") == child:
                    return since


def follow(ctx: JobContext, sync: SyncBus, child: str, since: str, share: float,
           timeout: float, **details: Any) -> dict[str, Any]:
    """Wait for ``child`` to end and return its task, passing its progress on (scaled to
    ``share`` of the parent's) with ``details``; :class:`kimchi.bus.context.Stop` when the
    parent is cancelled (the caller stops the child), :class:`ChildGone` if it vanishes.

    Woken by the child's own events (a blocking read of the event stream after ``since``,
    taken before the child was queued), so the parent goes on as soon as the child ends
    rather than at the next poll; at least every 0.1 s it checks for a cancel and reads the
    task again (an event trimmed away is never waited for).  ``timeout``: the Redis
    connection's command timeout, which each blocking read stays well within."""
    last = None
    while True:
        t = sync.task(child)
        if t is None:
            raise ChildGone(child)
        if t["status"] in bus.TERMINAL:
            return t
        if (t["progress"], t["message"]) != last:
            last = (t["progress"], t["message"])
            ctx.progress(None if t["progress"] is None else share * t["progress"],
                         TaskText.of_task(t), **details)
        ctx.check()
        since = child_event(sync, child, since, block_ms=max(1, min(100, int(timeout * 500))))


def stop_child(sync: SyncBus, child: str) -> None:
    """Cancel ``child`` unless it has ended, and wait (30 s at most) until it has."""
    try:
        t = sync.task(child)
        if t is None or t["status"] in bus.TERMINAL:
            return
        sync.cancel(child)
        sync.wait(child, timeout=30)
    except Exception as e:  # Redis away: its lease ends, the worker's cleanup runs
        log.warning("job %s not stopped: %s", child, e)


def run_child(ctx: JobContext, sync: SyncBus, kind: str, params: dict[str, Any], host: str,
              share: float, timeout: float, target_uri: str = "",
              **details: Any) -> dict[str, Any]:
    """Queue this attempt's child job of ``kind`` on ``host`` and :func:`follow` it to its
    end; returns its task (whatever its status).  :class:`ChildGone` if it vanishes."""
    child = child_id(ctx.task_id, ctx.attempt)
    since = last_event(sync)
    sync.submit(kind, {**params, "parent": ctx.task_id}, target_uri, task_id=child,
                host=host)
    return follow(ctx, sync, child, since, share, timeout, **details)
