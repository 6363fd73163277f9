"""/tasks: list, look at and cancel tasks."""

from __future__ import annotations

from typing import Any

from kimchi.errors import Forbidden
from kimchid.api.access import Access
from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable
from kimchid.model.tasks import TaskService


def register(table: RouteTable, tasks: TaskService, cursor: Any, access: Access) -> None:
    async def list_tasks(call: Call) -> Reply:
        q = call.query
        since = await cursor()  # before listing: watching from here misses nothing
        found = await tasks.list(status=q.get("status"), kind=q.get("kind"),
                                 target_uri=q.get("target_uri"), limit=int(q.get("limit", 1000)))
        found = [t for t in found if access.can_see_task(call.who, t)]
        return Reply(200, found, {"Events-Cursor": since})

    async def visible(call: Call) -> dict[str, Any]:
        t = await tasks.get(call.args["id"])
        if not access.can_see_task(call.who, t):
            raise Forbidden("KCHAUTH0015E", id=t["id"])
        return t

    async def get_task(call: Call) -> dict[str, Any]:
        return await visible(call)

    async def cancel_task(call: Call) -> Reply:
        await visible(call)
        t = await tasks.cancel(call.args["id"])
        return Reply(202, t, {"Location": f"/tasks/{t['id']}"})

    table.add("/tasks", "GET", list_tasks, "List tasks, newest first", "tasks",
              query={"status": {"enum": ["running", "finished", "failed", "cancelled"]},
                     "kind": {"type": "string", "maxLength": 64},
                     "target_uri": {"type": "string", "maxLength": 256, "format": "regex",
                                    "description": "regular expression (Python's)"},
                     "limit": {"type": "integer", "minimum": 1, "maximum": 10000}},
              response={"type": "array", "items": TASK_SCHEMA},
              description="The `Events-Cursor` header holds the id of the newest event at the "
                          "time of the listing: watch `/events?since=<it>` to miss nothing.")
    table.add("/tasks/<id>", "GET", get_task, "Look at one task", "tasks", response=TASK_SCHEMA)
    table.add("/tasks/<id>", "DELETE", cancel_task, "Cancel a running task", "tasks",
              response=TASK_SCHEMA, status=202,
              description="202: the worker is asked to stop; the task becomes `cancelled` once "
                          "it has stopped and cleaned up. 400 when the task has already ended.")
