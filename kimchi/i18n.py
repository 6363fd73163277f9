"""Translations: the language of a request, error reasons and the UI's strings in it.

The source of every translation is a gettext catalogue in ``po/`` (``po/kimchi.pot``, the
template Babel extracts, and one ``po/<locale>.po`` per language).  Three kinds of strings
are in it:

* the error messages of :data:`kimchi.errors.CATALOGUE`, each with its ``errcode`` as the
  message context (``msgctxt``): a code never changes, whatever its words become;
* the UI's strings in ``webui/index.html`` (every text and the placeholder, title,
  aria-label and alt of an element, but under ``translate="no"``);
* the UI's strings in ``webui/js/**.js``: the arguments of ``_(...)`` and ``_n(...)``;
* the messages of tasks: the templates of ``TaskText("Copying {name}", name=...)`` in the
  Python code (kimchi/bus/text.py), which jobs write and :func:`task_message` translates.

``python -m kimchi.i18n update`` extracts them again and merges the ``.po`` files;
``python -m kimchi.i18n compile`` writes what kimchid reads, in ``kimchi/locale/``: a
``.mo`` per language (the error messages, read with :mod:`gettext`) and a ``webui.json``
(the UI's strings, the task messages and the error messages, these keyed by their errcode:
served as they are at ``GET /i18n``).  kimchid needs only the standard
library; Babel is needed to extract and compile (the ``dev`` and ``test`` extras).

The language of a request is the user's choice (the ``kimchi_lang`` cookie the UI's
language menu sets), else the best of its ``Accept-Language`` that kimchi speaks, else
English.
"""

from __future__ import annotations

import ast
import gettext
import json
import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any

from kimchi.accept import weighted

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = Path(__file__).resolve().parent / "locale"  # compiled, package data
PO_DIR = ROOT / "po"  # the sources (in the checkout only)
DOMAIN = "kimchi"
DEFAULT = "en"

#: BCP 47 tag -> (gettext locale, the language's own name)
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("en", "English"),
    "pt-BR": ("pt_BR", "Português (Brasil)"),
    "zh-CN": ("zh_CN", "简体中文"),
}
TRANSLATED = tuple(tag for tag in LANGUAGES if tag != DEFAULT)
COOKIE = "kimchi_lang"  # the user's choice, set by the UI's language menu

# what a language range of Accept-Language (lower case) means when no tag is the same:
# Portuguese is served Brazilian Portuguese, Chinese in Simplified script Simplified
# Chinese; Traditional Chinese (zh-TW, zh-HK, zh-Hant) is not served Simplified.
_NEAR = {"pt": "pt-BR", "zh": "zh-CN", "zh-hans": "zh-CN", "zh-sg": "zh-CN", "en": "en"}
_NOT_SIMPLIFIED = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")


def language_of(tag: str | None) -> str | None:
    """The language kimchi speaks for one language tag (``pt-br``, ``pt_BR``, ``zh-Hans-CN``,
    ``en-GB``), or None."""
    if not tag:
        return None
    low = tag.strip().replace("_", "-").lower()
    for known in LANGUAGES:
        if low == known.lower():
            return known
    if low.startswith(_NOT_SIMPLIFIED):
        return None
    parts = low.split("-")
    for n in range(len(parts), 0, -1):
        near = _NEAR.get("-".join(parts[:n]))
        if near:
            return near
    return None


def negotiate(accept_language: str | None, choice: str | None = None) -> str:
    """The language to answer in: ``choice`` (the cookie) when kimchi speaks it, else the
    range of ``accept_language`` of the highest q-value that kimchi speaks, else English."""
    chosen = language_of(choice)
    if chosen:
        return chosen
    ranges = sorted((-q, i, name) for i, (name, q) in enumerate(weighted(accept_language))
                    if q > 0)
    for _q, _i, name in ranges:
        if name == "*":
            return DEFAULT
        found = language_of(name)
        if found:
            return found
    return DEFAULT


@cache
def translations(tag: str) -> gettext.NullTranslations:
    """The compiled catalogue of language ``tag`` (no translation for English, or when its
    ``.mo`` is missing)."""
    if tag == DEFAULT or tag not in LANGUAGES:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, [LANGUAGES[tag][0]], fallback=True)


def reason(errcode: str, params: dict[str, Any], tag: str) -> str:
    """An error's reason in language ``tag``: ``"<errcode>: <message>"`` as
    :func:`kimchi.errors.message` writes it, the message translated."""
    from kimchi.errors import CATALOGUE, message

    if tag == DEFAULT:
        return message(errcode, **params)
    template = translations(tag).pgettext(errcode, CATALOGUE[errcode])
    try:
        text = template.format(**params)
    except (KeyError, IndexError, ValueError):
        return message(errcode, **params)
    return f"{errcode}: {text}"


def task_message(task: Mapping[str, Any], tag: str) -> str:
    """A task's ``message`` in language ``tag``: its template (``message_id``) translated
    and filled with ``message_args``, or the reason of its error (``errcode``); the
    English ``message`` as it is when the task carries neither, or when the catalogue
    has no translation of it."""
    text = str(task.get("message") or "")
    if tag == DEFAULT:
        return text
    args = task.get("message_args")
    args = args if isinstance(args, dict) else {}
    errcode = task.get("errcode")
    if isinstance(errcode, str) and errcode:
        from kimchi.errors import CATALOGUE

        return reason(errcode, args, tag) if errcode in CATALOGUE else text
    template = task.get("message_id")
    if not isinstance(template, str) or not template:
        return text
    translated = translations(tag).gettext(template)
    if translated == template:
        return text
    try:
        return translated.format(**args)
    except (KeyError, IndexError, ValueError, AttributeError):
        return text


def translate_tasks(body: Any, tag: str) -> Any:
    """``body`` with the ``message`` of each task in it in language ``tag``: a task, or a
    list of them (an answer of ``/tasks``, or a 202's); anything else as it is."""
    if tag == DEFAULT:
        return body
    if isinstance(body, dict) and "message_id" in body and "message" in body:
        return {**body, "message": task_message(body, tag)}
    if isinstance(body, list) and body and all(
            isinstance(t, dict) and "message_id" in t for t in body):
        return [{**t, "message": task_message(t, tag)} for t in body]
    return body


@cache
def ui_messages(tag: str) -> dict[str, Any]:
    """The UI's strings in language ``tag``: English msgid -> translation (a list of the
    plural forms for a plural message, keyed by its singular)."""
    if tag == DEFAULT or tag not in LANGUAGES:
        return {}
    path = LOCALE_DIR / LANGUAGES[tag][0] / "webui.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


# -- extraction (Babel's custom extraction methods, see babel.cfg) ------------------------

Extracted = tuple[int, str | None, Any, list[str]]


def extract_errors(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                   options: Any) -> Iterator[Extracted]:
    """The messages of ``CATALOGUE = {...}`` in kimchi/errors.py, each with its errcode as
    the context (``pgettext(errcode, message)``)."""
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        target: ast.expr
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id == "CATALOGUE"):
            continue
        if not isinstance(value, ast.Dict):
            continue
        for key, msg in zip(value.keys, value.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(msg, ast.Constant):
                code = str(key.value)
                yield msg.lineno, "pgettext", (code, msg.value), [
                    f"error {code}: keep every {{field}} as it is"]


TASK_TEXT = "TaskText"  # kimchi/bus/text.py: a task's message, its template extracted


def task_text_calls(tree: ast.AST) -> Iterator[tuple[int, str | None]]:
    """(line, template) of each ``TaskText(...)`` call of a module; the template is None
    when the first argument is no string literal (then it cannot be extracted)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == TASK_TEXT):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value
        else:
            yield node.lineno, None


def extract_task_texts(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                       options: Any) -> Iterator[Extracted]:
    """The templates of the task messages of a Python module: the string literal that
    opens each ``TaskText(...)`` call."""
    for line, template in task_text_calls(ast.parse(fileobj.read())):
        if template:
            yield line, None, template, ["task message: keep every {field} as it is"]


_ATTRS = ("placeholder", "title", "aria-label", "alt")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
_LETTER = re.compile(r"[^\W\d_]")


def html_text(text: str) -> str:
    """A text of the page as a msgid: its whitespace collapsed (i18n.js does the same)."""
    return " ".join(text.split())


class _PageStrings(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, bool]] = []  # (tag, translated)
        self.found: list[tuple[int, str]] = []

    def _translated(self) -> bool:
        return not self.open or self.open[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        on = self._translated() and a.get("translate") != "no" and tag not in (
            "script", "style")
        if a.get("translate") == "yes":
            on = True
        if on:
            for name in _ATTRS:
                value = html_text(a.get(name) or "")
                if _LETTER.search(value):
                    self.found.append((self.getpos()[0], value))
        if tag not in _VOID:
            self.open.append((tag, on))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        text = html_text(data)
        if self._translated() and _LETTER.search(text):
            self.found.append((self.getpos()[0], text))


def page_strings(html: str) -> list[tuple[int, str]]:
    """(line, msgid) of every translatable text and attribute of an HTML page."""
    parser = _PageStrings()
    parser.feed(html)
    parser.close()
    return parser.found


def extract_html(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                 options: Any) -> Iterator[Extracted]:
    """Babel extraction method for webui/index.html: what :func:`page_strings` finds."""
    for line, text in page_strings(fileobj.read().decode("utf-8")):
        yield line, None, text, []


# -- the maintenance commands (python -m kimchi.i18n ...), with Babel ---------------------

KEYWORDS = {"_": None, "_n": (1, 2), "pgettext": ((1, "c"), 2)}


def extract_catalogue() -> Any:
    """A Babel Catalog of every translatable string of kimchi (what ``po/kimchi.pot`` holds)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg", encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    catalog = Catalog(project="kimchi", version="0.1", msgid_bugs_address="",
                      copyright_holder="the kimchi authors", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS, comment_tags=("i18n:",),
            strip_comment_tags=True):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def _write_po(catalog: Any, path: Path, **kw: Any) -> None:
    from babel.messages.pofile import write_po

    with open(path, "wb") as f:
        write_po(f, catalog, width=100, sort_output=False, **kw)


def _strings(catalog: Any) -> list[tuple[Any, ...]]:
    return [(m.context, m.id, tuple(m.locations), tuple(m.auto_comments))
            for m in catalog if m.id]


def update() -> None:
    """Extract ``po/kimchi.pot`` again and merge it into every ``po/<locale>.po``."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    template = extract_catalogue()
    pot = PO_DIR / "kimchi.pot"
    if pot.exists():  # the same strings: the same date, so that nothing else changes
        with open(pot, "rb") as f:
            old = read_po(f)
        if _strings(old) == _strings(template):
            template.creation_date = old.creation_date
    _write_po(template, pot, omit_header=False)
    for tag in TRANSLATED:
        locale = LANGUAGES[tag][0]
        path = PO_DIR / f"{locale}.po"
        if path.exists():
            with open(path, "rb") as f:
                catalog = read_po(f, locale=locale)
        else:
            catalog = Catalog(locale=locale, project="kimchi", version="0.1")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        _write_po(catalog, path)


def compiled(locale: str) -> tuple[bytes, str]:
    """The ``.mo`` and the UI's ``webui.json`` of ``po/<locale>.po``, as bytes and text."""
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(PO_DIR / f"{locale}.po", "rb") as f:
        catalog = read_po(f, locale=locale)
    mo = io.BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    ui: dict[str, Any] = {}
    for m in catalog:
        if not m.id or m.fuzzy:
            continue
        if m.context:  # an error's message, by its errcode: the UI translates failed tasks
            if m.string:
                ui[str(m.context)] = m.string
            continue
        if m.pluralizable:
            forms = [str(f) for f in m.string or ()]
            if forms and all(forms):
                ui[str(m.id[0])] = forms
        elif isinstance(m.id, str) and m.string:
            ui[m.id] = m.string
    return mo.getvalue(), json.dumps(ui, ensure_ascii=False, sort_keys=True, indent=0) + "\n"


def compile_all() -> None:
    """Write ``kimchi/locale/<locale>/`` from ``po/<locale>.po``: what kimchid reads."""
    for tag in TRANSLATED:
        locale = LANGUAGES[tag][0]
        mo, ui = compiled(locale)
        out = LOCALE_DIR / locale / "LC_MESSAGES"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{DOMAIN}.mo").write_bytes(mo)
        (LOCALE_DIR / locale / "webui.json").write_text(ui, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["update"]:
        update()
    elif args == ["compile"]:
        compile_all()
    else:
        print("usage: python -m kimchi.i18n update|compile", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
