"""Every word the browser UI shows goes through the translation functions.

The catalogues (po/) hold what Babel extracts: the texts and the placeholder, title,
aria-label and alt attributes of webui/index.html, and the first argument(s) of ``_()`` and
``_n()`` in webui/js. A text the code writes some other way — a string literal put in
``textContent``, an ``aria-label`` built as `${kind} progress`, a button's label in
``el('button', cls, 'Cancel')``, a hand-made plural ``n === 1 ? 'image' : 'images'`` —
is never extracted, so it stays English in every language. This test reads the UI's
modules as tokens (strings, template literals, comments and regular expressions told apart)
and fails on:

* a string with a letter in it written to a sink that people see or hear: ``textContent``,
  ``innerText``, ``title``, ``placeholder``, ``alt``, ``label``, ``setAttribute`` of
  aria-label / aria-valuetext / title / placeholder / alt, ``el(tag, cls, text)``,
  ``actionButton(text, cls, label, fn)``, ``append``/``prepend``/``replaceChildren``/
  ``createTextNode``, ``announce``, ``showError``, ``showNameError``, ``confirm``,
  ``alert``, ``setCustomValidity``, ``new Option``, ``new Error``;
* anywhere else, a string or template text that reads as words for people (two words, or
  a capitalised word), but for the code's own values (selectors, URLs, event and key
  names, HTTP headers, CSS) that the allow-list below knows;
* an English plural made by hand (``n === 1 ? 'x' : 'xs'``, dom.js' ``plural()``);
* in index.html, a text or attribute in a ``<template>`` or anywhere else that the
  extraction skips (``translate="no"`` is for names, addresses and paths only).

A literal inside ``_('...')``/``_n('...', '...')`` as its message is translated; the values
of its parameters are checked as any other expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kimchi import i18n

ROOT = Path(__file__).resolve().parent.parent.parent
WEBUI = ROOT / "webui"
JS_FILES = sorted((WEBUI / "js").rglob("*.js"))

LETTER = re.compile(r"[A-Za-z]")


# -- a JavaScript tokenizer, just enough to tell strings from code -------------------------

@dataclass
class Tok:
    kind: str  # 'str', 'tpl', 'ident', 'punct', 'num', 'regex'
    value: str  # a string's value; a template's text chunks joined by '\x00'
    line: int
    parts: list[list[Tok]] = field(default_factory=list)  # a template's ${...} tokens


_REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {"return", "typeof", "case", "do", "else",
                                              "in", "of", "new", "delete", "void", "=>"}
_PUNCT3 = ("===", "!==", "...", "**=", "<<=", ">>=", ">>>", "&&=", "||=", "??=")
_PUNCT2 = ("=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "++", "--", "+=", "-=",
           "*=", "/=", "%=", "&=", "|=", "^=", "**", "<<", ">>")


class Tokenizer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.line = 1

    def _adv(self, n: int) -> str:
        s = self.src[self.i:self.i + n]
        self.line += s.count("\n")
        self.i += n
        return s

    def _string(self, quote: str) -> str:
        out = []
        self._adv(1)
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "\\":
                out.append(self._adv(2)[1:])
                continue
            self._adv(1)
            if c == quote:
                break
            out.append(c)
        return "".join(out)

    def _template(self) -> Tok:
        tok = Tok("tpl", "", self.line)
        chunks: list[str] = []
        cur: list[str] = []
        self._adv(1)
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "\\":
                cur.append(self._adv(2)[1:])
            elif c == "`":
                self._adv(1)
                break
            elif self.src.startswith("${", self.i):
                self._adv(2)
                chunks.append("".join(cur))
                cur = []
                tok.parts.append(self.tokens(until_brace=True))
            else:
                cur.append(self._adv(1))
        chunks.append("".join(cur))
        tok.value = "\x00".join(chunks)
        return tok

    def tokens(self, until_brace: bool = False) -> list[Tok]:
        out: list[Tok] = []
        depth = 0
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            if c in " \t\r\n":
                self._adv(1)
            elif src.startswith("//", self.i):
                end = src.find("\n", self.i)
                self._adv((end if end >= 0 else len(src)) - self.i)
            elif src.startswith("/*", self.i):
                end = src.find("*/", self.i + 2)
                self._adv((end + 2 if end >= 0 else len(src)) - self.i)
            elif c in "'\"":
                line = self.line
                out.append(Tok("str", self._string(c), line))
            elif c == "`":
                out.append(self._template())
            elif c == "/" and (not out or out[-1].value in _REGEX_AFTER
                               and out[-1].kind in ("punct", "ident")):
                line = self.line
                m = re.compile(r"/(?:\\.|\[(?:\\.|[^\]\\])*\]|[^/\\\n])+/[a-z]*").match(src, self.i)
                if not m:
                    out.append(Tok("punct", self._adv(1), line))
                else:
                    out.append(Tok("regex", self._adv(m.end() - self.i), line))
            elif c.isalpha() or c in "_$":
                m = re.compile(r"[\w$]+").match(src, self.i)
                assert m
                out.append(Tok("ident", self._adv(m.end() - self.i), self.line))
            elif c.isdigit():
                m = re.compile(r"[\w.]+").match(src, self.i)
                assert m
                out.append(Tok("num", self._adv(m.end() - self.i), self.line))
            else:
                if until_brace:
                    if c == "{":
                        depth += 1
                    elif c == "}":
                        if depth == 0:
                            self._adv(1)
                            return out
                        depth -= 1
                for p in (*_PUNCT3, *_PUNCT2):
                    if src.startswith(p, self.i):
                        out.append(Tok("punct", self._adv(len(p)), self.line))
                        break
                else:
                    out.append(Tok("punct", self._adv(1), self.line))
        return out


def tokenize(src: str) -> list[Tok]:
    return Tokenizer(src).tokens()


# -- what is shown to people --------------------------------------------------------------

# property assignments (x.textContent = ...) whose value people read or hear
SINK_PROPS = {"textContent", "innerText", "title", "placeholder", "alt", "label", "ariaLabel",
              "ariaValueText"}
# setAttribute(name, value): the attributes people read or hear
SINK_ATTRS = {"aria-label", "aria-valuetext", "aria-description", "aria-roledescription",
              "title", "placeholder", "alt"}
# function -> the indexes of its arguments people read (None: every one)
SINK_CALLS: dict[str, tuple[int, ...] | None] = {
    "el": (2,), "actionButton": (0, 2), "announce": (0,), "showError": (1,),
    "showNameError": (1,), "confirm": (0,), "alert": (0,), "createTextNode": (0,),
    "append": None, "prepend": None, "replaceChildren": None, "setCustomValidity": (0,),
    "Option": (0,), "Error": (0,), "pathText": (1,),
}
# an object's keys whose values are texts for people: askConfirm({ title, text, ok }), a
# field's { placeholder, help }
SINK_KEYS = {"title", "text", "ok", "cancel", "label", "help", "placeholder", "message",
             "ariaLabel", "alt", "caption", "heading", "hint", "empty", "what"}
TRANSLATORS = {"_": 1, "_n": 2}
# errors thrown only to be caught where they are thrown, never shown
INTERNAL = {"no Terminal", "xterm.js did not load", "no clipboard"}  # function -> how many leading arguments are its message

# strings with letters that are values of the code, not words for people, even where a sink
# takes them (append('x') never occurs with them; these are for the prose rule below)
ALLOWED = re.compile(r"""^(?:
    [a-z][a-z0-9]*(?:[-_.:][a-z0-9*]+)*          # keys, kinds, event types, classes: vm.state
  | [a-z][a-z0-9-]*(?:\s+[a-z][a-z0-9-]*)+       # class lists: "btn btn-small"
  | [A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]*)+           # HTTP headers: Events-Cursor, Content-Type
  | (?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)   # methods
  | (?:Escape|Enter|Tab|Home|End|Backspace|Delete|Space|PageUp|PageDown
      |Arrow(?:Up|Down|Left|Right)|Shift|Control|Alt|Meta)     # key names
  | (?:Bearer|Basic|Accept|Authorization|Range|Location|Retry-After|XMLHttpRequest)  # HTTP words
  | (?:TypeError|AbortError|TimeoutError|NotAllowedError|SyntaxError|RangeError)  # error names
  | [/#.\[:@?&=][^\s]*                           # URLs, selectors, query strings
  | [^\s]*/[^\s]*                                # paths, mime types
  | [\w.+-]+@[\w.-]+                             # addresses
  | [a-z]+:                                      # schemes: wss:
  | .*(?:\[[\w-]+(?:=[^\]]*)?\]|:not\().*          # selectors: a[href], :not([disabled])
  | [^A-Za-z]*                                   # no letter
)$""", re.VERBOSE)

# words for people: two words, or a capitalised word, or a sentence's punctuation
PROSE = re.compile(r"[A-Za-z]{2,}[^\s]*\s+[A-Za-z]|^\s*[A-Z][A-Za-z]*[a-z]|[A-Za-z][.:!?…]\s*$"
                   r"|^\s+[A-Za-z]|[A-Za-z]\s+$")

# where a literal is no text for people even when it reads as one
NOT_TEXT_CALLS = {"querySelector", "querySelectorAll", "closest", "matches", "getElementById",
                  "$", "addEventListener", "removeEventListener", "createElement",
                  "getAttribute", "removeAttribute", "hasAttribute", "toggleAttribute",
                  "api", "fetch", "get", "has", "add", "delete", "startsWith", "endsWith",
                  "includes", "indexOf", "split", "join", "test", "RegExp", "log", "warn",
                  "error", "debug", "info", "toggle", "contains", "remove", "replace",
                  "dispatchEvent", "Event", "CustomEvent", "on", "off", "emit", "watch",
                  "register", "route", "EventSource", "WebSocket", "URL", "Blob",
                  "DateTimeFormat", "NumberFormat", "Collator", "setItem", "getItem",
                  "removeItem", "postMessage", "open", "send", "set", "watchTasks", "execCommand",
                  "runningOf", "scrollIntoView", "focus", "ResizeObserver"}
# names whose literal values are code (objects' keys, CSS, statuses) and never shown as such
CODE_NAMES = re.compile(r"(?i)^(?:className|id|type|name|key|kind|cls|css|class\w*|state|status"
                        r"|method|mode|role|dir|href|src|rel|value|dataset|event|ev|sort|"
                        r"inputMode|autocomplete|lang|target|accept|tag|icon|cookie|data\w*)$")


@dataclass
class Finding:
    file: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text!r} ({self.why})"


def _matching(toks: list[Tok], i: int) -> int:
    """The index of the bracket closing the one at ``toks[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[toks[i].value]]
    j = i + 1
    while j < len(toks) and stack:
        t = toks[j]
        if t.kind == "punct":
            if t.value in pairs:
                stack.append(pairs[t.value])
            elif stack and t.value == stack[-1]:
                stack.pop()
        j += 1
    return j - 1


def _args(toks: list[Tok], open_i: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of the arguments of the call whose '(' is ``toks[open_i]``."""
    close = _matching(toks, open_i)
    out = []
    start = open_i + 1
    j = start
    while j < close:
        t = toks[j]
        if t.kind == "punct" and t.value in "([{":
            j = _matching(toks, j) + 1
            continue
        if t.kind == "punct" and t.value == ",":
            out.append((start, j))
            start = j + 1
        j += 1
    if start < close:
        out.append((start, close))
    return out


def _expr_end(toks: list[Tok], i: int) -> int:
    """The end of the expression starting at ``toks[i]`` (an assignment's value)."""
    j = i
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.value in "([{":
            j = _matching(toks, j) + 1
            continue
        if t.kind == "punct" and t.value in (";", ")", "]", "}", ","):
            return j
        if j > i and t.line > toks[j - 1].line and toks[j - 1].kind != "punct" \
                and t.kind == "ident" and t.value in ("const", "let", "if", "for", "return"):
            return j
        j += 1
    return j


class Scanner:
    def __init__(self, name: str) -> None:
        self.name = name
        self.findings: list[Finding] = []
        self.msgids: set[int] = set()  # id() of tokens that are a translator's message
        self.in_sink: dict[int, str] = {}  # id() of token -> the sink it is written to
        self.not_text: set[int] = set()  # id() of tokens that are code's values
        self.params: set[int] = set()  # id() of literals put in a translated text

    def scan(self, toks: list[Tok]) -> None:
        self.mark(toks)
        self.check(toks)

    @staticmethod
    def _outside_functions(toks: list[Tok], a: int, b: int) -> Iterator[Tok]:
        """The tokens of ``toks[a:b]`` but those of the functions defined in it (a
        callback's strings are judged where they are used)."""
        j = a
        while j < b:
            t = toks[j]
            if t.kind == "punct" and t.value == "=>" and j + 1 < b:
                j = (_matching(toks, j + 1) + 1 if toks[j + 1].value == "{"
                     else _expr_end(toks, j + 1))
                continue
            if t.kind == "ident" and t.value == "function":
                k = j
                while k < b and toks[k].value != "{":
                    k += 1
                j = _matching(toks, k) + 1 if k < b else b
                continue
            yield t
            j += 1

    def _mark_range(self, toks: list[Tok], a: int, b: int, why: str) -> None:
        for t in self._outside_functions(toks, a, b):
            self.in_sink.setdefault(id(t), why)
            for part in t.parts:
                self._mark_range(part, 0, len(part), why)

    def _mark_not_text(self, toks: list[Tok], a: int, b: int) -> None:
        for t in self._outside_functions(toks, a, b):
            if t.kind in ("str", "tpl"):
                self.not_text.add(id(t))
            for part in t.parts:
                self._mark_not_text(part, 0, len(part))

    def mark(self, toks: list[Tok]) -> None:
        for i, t in enumerate(toks):
            for part in t.parts:
                self.mark(part)
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            prev = toks[i - 1] if i else None
            if t.kind == "ident" and nxt is not None and nxt.value == "(":
                args = _args(toks, i + 1)
                if t.value in TRANSLATORS:
                    for a, b in args[:TRANSLATORS[t.value]]:
                        if b - a == 1 and toks[a].kind == "str":
                            self.msgids.add(id(toks[a]))
                    for a, b in args[TRANSLATORS[t.value]:]:  # the values put in its text
                        for k in self._outside_functions(toks, a, b):
                            if k.kind in ("str", "tpl"):
                                self.params.add(id(k))
                elif t.value == "setAttribute" and args:
                    a, b = args[0]
                    self.not_text.add(id(toks[a]))
                    if b - a == 1 and toks[a].kind == "str" and toks[a].value in SINK_ATTRS \
                            and len(args) > 1:
                        self._mark_range(toks, *args[1], f"setAttribute('{toks[a].value}')")
                    elif len(args) > 1:
                        self._mark_not_text(toks, *args[1])
                elif t.value in SINK_CALLS and not (t.value in ("Error", "Option")
                                                    and prev is not None
                                                    and prev.value != "new"):
                    which = SINK_CALLS[t.value]
                    for pos, (a, b) in enumerate(args):
                        if which is None or pos in which:
                            self._mark_range(toks, a, b, f"{t.value}()")
                        elif which is not None:  # a tag, a class, an id
                            self._mark_not_text(toks, a, b)
                elif t.value in NOT_TEXT_CALLS:
                    for a, b in args:
                        self._mark_not_text(toks, a, b)
            if t.kind == "ident" and t.value in SINK_KEYS and nxt is not None \
                    and nxt.value == ":" and prev is not None and prev.value in ("{", ","):
                self._mark_range(toks, i + 2, _expr_end(toks, i + 2), f"{{ {t.value}: }}")
            if t.kind == "ident" and t.value in SINK_PROPS and prev is not None \
                    and prev.value in (".", "?.") and nxt is not None \
                    and nxt.value in ("=", "+="):
                self._mark_range(toks, i + 2, _expr_end(toks, i + 2), f".{t.value} =")
            # a value for code: obj.className = '...', { type: '...' }, x.status === '...'
            if t.kind == "ident" and CODE_NAMES.match(t.value) and nxt is not None \
                    and nxt.value in ("=", ":", "===", "!==", "==", "!="):
                if nxt.value == "=":
                    self._mark_not_text(toks, i + 2, _expr_end(toks, i + 2))
                elif i + 2 < len(toks) and toks[i + 2].kind in ("str", "tpl"):
                    self.not_text.add(id(toks[i + 2]))
            if t.kind == "str" and nxt is not None and nxt.value == ":" and prev is not None \
                    and prev.value in ("{", ","):
                self.not_text.add(id(t))  # an object's key
            if t.kind in ("str", "tpl") and prev is not None and prev.value in (
                    "===", "!==", "==", "!=", "case", "in", "import", "from"):
                self.not_text.add(id(t))
            if t.kind in ("str", "tpl") and nxt is not None and nxt.value in (
                    "===", "!==", "==", "!=", "in"):
                self.not_text.add(id(t))
            # n === 1 ? 'image' : 'images': a plural made by hand
            if t.kind == "num" and t.value == "1" and prev is not None \
                    and prev.value in ("===", "==") and nxt is not None and nxt.value == "?":
                j = i + 2
                if j + 2 < len(toks) and toks[j].kind == "str" and toks[j + 1].value == ":" \
                        and toks[j + 2].kind == "str" and LETTER.search(toks[j].value):
                    self.findings.append(Finding(self.name, t.line,
                                                 f"{toks[j].value} / {toks[j + 2].value}",
                                                 "a plural made by hand: use _n()"))
            if t.kind == "ident" and t.value == "plural" and nxt is not None \
                    and nxt.value == "(" and (prev is None or prev.value not in (
                        "function", ".")):
                self.findings.append(Finding(self.name, t.line, "plural(...)",
                                             "dom.js' English plural: use _n()"))

    def _text(self, t: Tok) -> str:
        return t.value.replace("\x00", "${…}")

    def check(self, toks: list[Tok]) -> None:
        for t in toks:
            for part in t.parts:
                self.check(part)
            if t.kind not in ("str", "tpl") or id(t) in self.msgids or t.value in INTERNAL:
                continue
            chunks = t.value.split("\x00")
            if not any(LETTER.search(c) for c in chunks):
                continue
            if id(t) in self.params and id(t) not in self.msgids and id(t) not in self.not_text:
                self.findings.append(Finding(self.name, t.line, self._text(t),
                                             "English put into a translated text"))
                continue
            sink = self.in_sink.get(id(t))
            if sink is not None:
                if id(t) in self.not_text:
                    continue
                self.findings.append(Finding(self.name, t.line, self._text(t),
                                             f"shown through {sink}, untranslated"))
                continue
            if id(t) in self.not_text:
                continue
            words = [c for c in chunks if PROSE.search(c) and not ALLOWED.match(c)]
            if words:
                self.findings.append(Finding(self.name, t.line, self._text(t),
                                             "reads as words for people: _()"))


def scan_source(name: str, src: str) -> list[Finding]:
    s = Scanner(name)
    s.scan(tokenize(src))
    return s.findings


def scan_js() -> list[Finding]:
    out: list[Finding] = []
    for path in JS_FILES:
        out += scan_source(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    return out


# -- index.html ---------------------------------------------------------------------------

# attributes people read or hear; i18n.js translates those of kimchi.i18n._ATTRS
VISIBLE_ATTRS = ("placeholder", "title", "aria-label", "alt", "aria-valuetext",
                 "aria-description", "aria-roledescription", "label")
# what may stay as it is under translate="no": names, addresses, paths, versions
NAMES = re.compile(r"^(?:[\w.+-]+(?:[:/@][\w./+:@-]*)*|[^A-Za-z]*)$")


class _PageTexts(HTMLParser):
    """Every text and visible attribute of the page, wherever it is (translate="no" too;
    not scripts and styles)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self.code = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.code += 1
        a = dict(attrs)
        for name in VISIBLE_ATTRS:
            value = i18n.html_text(a.get(name) or "")
            if LETTER.search(value):
                self.found.append((self.getpos()[0], value))
        if tag == "input" and (a.get("type") or "") in ("button", "submit", "reset"):
            value = i18n.html_text(a.get("value") or "")
            if LETTER.search(value):
                self.found.append((self.getpos()[0], value))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.code -= 1

    def handle_data(self, data: str) -> None:
        text = i18n.html_text(data)
        if not self.code and LETTER.search(text):
            self.found.append((self.getpos()[0], text))


def page_findings(html: str) -> list[Finding]:
    extracted = {text for _line, text in i18n.page_strings(html)}
    parser = _PageTexts()
    parser.feed(html)
    parser.close()
    return [Finding("webui/index.html", line, text, "not extracted: never translated")
            for line, text in parser.found if text not in extracted and not NAMES.match(text)]


# -- the tests ----------------------------------------------------------------------------

def test_the_uis_modules_show_no_untranslated_words() -> None:
    findings = scan_js()
    assert not findings, (
        f"{len(findings)} texts of webui/js are not translatable (wrap them in _() or _n(), "
        "a sentence as one template with {placeholders}; see docs/translations.md):\n"
        + "\n".join(map(str, findings)))


def test_every_text_of_the_page_is_extracted() -> None:
    findings = page_findings((WEBUI / "index.html").read_text(encoding="utf-8"))
    assert not findings, "\n".join(map(str, findings))


def test_the_pages_templates_are_translated_too() -> None:
    """index.html's <template>s (a task's Cancel button, a VM's CPU and Memory) are not in
    the document's tree: core/i18n.js' translateTree must go into their content."""
    source = (WEBUI / "js" / "core" / "i18n.js").read_text(encoding="utf-8")
    body = source[source.index("export function translateTree"):]
    body = body[:body.index("\n}\n")]
    assert re.search(r"querySelectorAll\('template'\)\)\s*translateTree\(\w+\.content\)", body)
    html = (WEBUI / "index.html").read_text(encoding="utf-8")
    assert "<template" in html and ">Cancel</button>" in html


@pytest.mark.parametrize("source", [
    "bar.setAttribute('aria-label', `${kind} progress`);",
    "b.setAttribute('title', 'Delete it');",
    "const b = el('button', 'btn btn-small task-cancel', 'Cancel');",
    "const word = n === 1 ? 'image' : 'images';",
    "$('iso-count').textContent = `${numberFmt.format(n)} of ${all} ${word}`;",
    "x.textContent = 'None';",
    "x.title = `Source: ${src}`;",
    "input.placeholder = 'a folder';",
    "badge.replaceChildren(String(n), el('span', 'visually-hidden', ' running'));",
    "announce(`${name} deleted`);",
    "if (!ok) throw new Error('The server did not answer.');",
    "const parts = ['Disk image'];",
    "askConfirm({ title: _('Delete?'), ok: 'Delete' });",
    "this.field(grid, 'user', _('User'), 'input', { placeholder: 'none' });",
    "label.setAttribute('aria-label', _('Move {dev} {d}', { dev, d: 'up' }));",
    "const s = plural(n, 'VM', 'VMs');",
    "const t = `${size} MiB`;",
    "const COUNTERS = [['files', _('Files')], ['isos', 'ISOs']];",
    "li.append(el('span', 'obj-host', `on ${host}`));",
])
def test_the_scanner_finds_untranslated_words(source: str) -> None:
    assert scan_source("x.js", source), source


@pytest.mark.parametrize("source", [
    "bar.setAttribute('aria-label', _('{kind} progress', { kind }));",
    "const b = el('button', 'btn btn-small task-cancel', _('Cancel'));",
    "$('iso-count').textContent = _n('{n} image', '{n} images', n);",
    "x.className = `state state-${st}`; x.dataset.state = 'running';",
    "if (rec.status === 'finished') document.querySelector('#task-list li.task');",
    "el.addEventListener('click', () => api('POST', `/vms/${name}/start`));",
    "const FOCUS = 'a[href], button:not([disabled])';",
    "b.setAttribute('aria-expanded', 'false'); b.type = 'button';",
    "const KINDS = { 'vm.create': _('New VM'), 'iso.scan': _('ISO scan') };",
    "x.textContent = `${a} · ${b}`; y.textContent = '—';",
    "headers: { Accept: 'application/json', 'Content-Type': 'application/json' }",
    "const re = /it's a regex with 'quotes'/g; x.textContent = _('Fine');",
    "// a comment with 'Words in it'\nx.textContent = _('Fine'); /* 'More words' */",
])
def test_the_scanner_lets_code_values_and_translated_texts_be(source: str) -> None:
    assert scan_source("x.js", source) == [], source


def test_the_page_check_finds_what_extraction_misses() -> None:
    html = ("<body><p translate='no'>Some words here</p><p translate='no'>h2.example</p>"
            "<progress aria-valuetext='Half done'></progress><p title='A title'>Text</p>"
            "<template><button>Cancel</button></template></body>")
    assert [f.text for f in page_findings(html)] == ["Some words here", "Half done"]


if __name__ == "__main__":  # python tests/unit/test_ui_strings.py: the findings
    for f in scan_js():
        print(f)
