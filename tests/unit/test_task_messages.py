"""The messages of tasks are translatable: every one a job writes is a ``TaskText`` whose
template the catalogues hold, and a task's message comes back in the reader's language.

The code is read as it is (every module of kimchi/, kimchid/ and workers/, where the jobs of
every kind live): a message written as an f-string, a concatenation or a bare string
would reach users in English only, so none may remain.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from kimchi import i18n
from kimchi.bus.context import JobContext, Progress
from kimchi.bus.jobs import JOBS
from kimchi.bus.kinds import KINDS
from kimchi.bus.text import TaskText
from kimchi.errors import CATALOGUE, KimchiError

SOURCES = sorted(p for top in ("kimchi", "kimchid", "workers")
                 for p in (i18n.ROOT / top).rglob("*.py"))


def _modules() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in SOURCES]


MODULES = _modules()


def _english_only(node: ast.expr) -> bool:
    """A message that cannot be translated: a string, an f-string, text put together."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, (ast.JoinedStr, ast.BinOp)):
        return True
    if isinstance(node, ast.IfExp):
        return _english_only(node.body) or _english_only(node.orelse)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format")


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(i18n.ROOT)}:{getattr(node, 'lineno', '?')}"


def test_no_job_writes_a_message_in_english_only() -> None:
    """``ctx.progress(p, <message>)``, ``ctx.note(p, <message>)`` and a result's
    ``"message": <message>``: never a string, always a TaskText."""
    wrong = []
    for path, tree in MODULES:
        results = _returned_by_a_job(path)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("progress", "note") and len(node.args) >= 2
                    and _english_only(node.args[1])):
                wrong.append(_where(path, node))
            if results and isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and key.value == "message"
                            and _english_only(value)):
                        wrong.append(_where(path, value))
    assert not wrong, "messages of tasks in English only (write TaskText(...)):\n" + \
        "\n".join(wrong)


def _returned_by_a_job(path: Path) -> bool:
    """Modules whose dicts with a "message" are jobs' results (the jobs of workers/ and the
    daemon's, in kimchid/model/), not error bodies or log lines."""
    rel = path.relative_to(i18n.ROOT).as_posix()
    return rel.startswith(("workers/jobs/", "kimchid/model/")) and rel not in (
        "kimchid/model/audit.py",)


def test_every_task_text_has_a_literal_template_of_plain_fields() -> None:
    """Babel extracts only a string literal; the UI fills plain ``{name}`` fields only."""
    wrong = []
    count = 0
    for path, tree in MODULES:
        for line, template in i18n.task_text_calls(tree):
            count += 1
            if template is None:
                wrong.append(f"{path.relative_to(i18n.ROOT)}:{line}: not a string literal")
                continue
            for _text, field, spec, conversion in string.Formatter().parse(template):
                if field is not None and (not field.isidentifier() or spec or conversion):
                    wrong.append(f"{path.relative_to(i18n.ROOT)}:{line}: {{{field}}} in "
                                 f"{template!r}: a plain {{name}} only (format the value)")
    assert count > 40  # the scan sees the jobs' messages
    assert not wrong, "\n".join(wrong)


def test_every_task_template_is_in_the_catalogue_template() -> None:
    """So tests/unit/test_catalogues.py fails when one lacks a translation."""
    extracted = {m.id for m in i18n.extract_catalogue() if m.id and not m.context}
    templates = {t for _p, tree in MODULES for _l, t in i18n.task_text_calls(tree) if t}
    assert templates - extracted == set()
    assert "Waiting for a worker" in templates and "Cancelled before it started" in templates


def test_every_job_kind_is_registered_from_a_module_the_scan_reads() -> None:
    from kimchi.bus import kinds
    from workers.jobs import load_all

    scanned = {p.resolve() for p in SOURCES}
    for kind, fn in load_all().items():
        module = Path(fn.__code__.co_filename).resolve()
        assert module in scanned, (kind, module)
    daemon = {k for k, v in KINDS.items() if v.where == kinds.DAEMON}
    assert set(JOBS) | daemon == set(KINDS)


@pytest.mark.parametrize("tag, expected", [
    ("en", "Cloning a.img to b.img: 40 %"),
    ("pt-BR", "Clonando a.img como b.img: 40 %"),
    ("zh-CN", "正在将 a.img 克隆为 b.img：40 %"),
])
def test_a_task_message_in_each_language(tag: str, expected: str) -> None:
    text = TaskText("Cloning {name} to {target}: {percent} %", name="a.img", target="b.img",
                    percent="40")
    task = text.fields()
    assert task["message"] == "Cloning a.img to b.img: 40 %"
    assert task["message_id"] == "Cloning {name} to {target}: {percent} %"
    assert i18n.task_message(task, tag) == expected


def test_a_failed_tasks_message_is_its_errors_reason_in_the_language() -> None:
    err = KimchiError("KCHVM0002E", name="web1")
    task = TaskText.of_error(err).fields()
    assert task["message"] == err.reason and task["errcode"] == "KCHVM0002E"
    assert task["message_id"] == CATALOGUE["KCHVM0002E"]
    assert task["message_args"] == {"name": "web1"}
    assert i18n.task_message(task, "pt-BR") == "KCHVM0002E: A máquina virtual web1 não existe"
    assert i18n.task_message(task, "pt-BR") == i18n.reason("KCHVM0002E", err.params, "pt-BR")


def test_a_message_the_catalogue_lacks_stays_english() -> None:
    unknown = TaskText("Frobnicating {name}", name="x").fields()
    assert i18n.task_message(unknown, "pt-BR") == "Frobnicating x"
    old = {"message": "Copying {odd} 5 %", "message_id": None}  # a record of before
    assert i18n.task_message(old, "zh-CN") == "Copying {odd} 5 %"
    assert str(TaskText.of_task(old)) == "Copying {odd} 5 %"


def test_answers_translate_tasks_alone() -> None:
    task = {"id": "1", "status": "running", **TaskText("Checking the host").fields()}
    assert i18n.translate_tasks(task, "pt-BR")["message"] == "Verificando o host"
    assert i18n.translate_tasks([task], "zh-CN")[0]["message"] == "正在检查主机"
    assert i18n.translate_tasks(task, "en") is task
    other = {"name": "vm1", "message": "Checking the host"}  # not a task: as it is
    assert i18n.translate_tasks(other, "pt-BR") is other


def test_a_followed_tasks_message_is_passed_on_with_its_template() -> None:
    child = TaskText("Copying {name}: {percent} %", name="d.qcow2", percent="10").fields()
    assert TaskText.of_task(child) == TaskText("Copying {name}: {percent} %", name="d.qcow2",
                                               percent="10")
    failed = TaskText.error("KCHTASK0005E", error="OSError: disk full").fields()
    again = TaskText.of_task(failed)
    assert again.errcode == "KCHTASK0005E" and str(again) == failed["message"]


def test_the_ui_catalogue_holds_task_templates_and_errors_by_errcode() -> None:
    for tag in i18n.TRANSLATED:
        ui = i18n.ui_messages(tag)
        assert ui["Checking the host"] and ui["Waiting for a worker"]
        assert set(CATALOGUE) <= set(ui)
    assert i18n.ui_messages("pt-BR")["KCHVM0002E"] == "A máquina virtual {name} não existe"


def test_progress_keeps_the_template_beside_the_details() -> None:
    sent: list[Progress] = []

    def send(_ctx: JobContext, p: Progress) -> int:
        sent.append(p)
        return 1

    ctx = JobContext(task_id="t", entry_id="1-0", attempt="1", kind="diag.sleep", params={},
                     send_progress=send, send_found=lambda *_a: True, progress_interval=0)
    ctx.progress(50, TaskText("step {step} of {steps}", step=1, steps=2), step=1, t=3.0)
    assert sent[-1].details == {"step": 1, "t": 3.0}  # the task's details, as before
    assert sent[-1].message.argv() == ["step 1 of 2", "step {step} of {steps}",
                                       '{"step": 1, "steps": 2}', ""]

