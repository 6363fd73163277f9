"""The translation catalogues: complete, their placeholders intact, compiled, and the
language a request gets.

Every string Babel extracts (the error messages of kimchi/errors.py, the texts of
webui/index.html, the ``_()``/``_n()`` calls of webui/js) must have a translation in every
po/<locale>.po with the same ``{placeholders}``; what kimchid reads (kimchi/locale/) must
be what ``python -m kimchi.i18n compile`` makes of them now.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

pytest.importorskip("babel")

from babel.messages.pofile import read_po  # noqa: E402

from kimchi import i18n  # noqa: E402
from kimchi.errors import CATALOGUE, KimchiError  # noqa: E402

LOCALES = [i18n.LANGUAGES[tag][0] for tag in i18n.TRANSLATED]
FIELD = re.compile(r"\{(\w*)\}")


@pytest.fixture(scope="module")
def template() -> Any:
    """The strings of the code as it is now (not po/kimchi.pot, which may be stale)."""
    return i18n.extract_catalogue()


@pytest.fixture(scope="module", params=LOCALES)
def catalogue(request: pytest.FixtureRequest) -> Any:
    with open(i18n.PO_DIR / f"{request.param}.po", "rb") as f:
        return read_po(f, locale=request.param)


def _key(m: Any) -> tuple[str | None, str]:
    return m.context, m.id if isinstance(m.id, str) else m.id[0]


def test_every_string_of_the_code_is_translated(template: Any, catalogue: Any) -> None:
    have = {_key(m): m for m in catalogue if m.id}
    missing = []
    for m in template:
        if not m.id:
            continue
        found = have.get(_key(m))
        strings = ([] if found is None else
                   list(found.string) if isinstance(found.string, (tuple, list))
                   else [found.string])
        if found is None or found.fuzzy or not strings or not all(strings):
            missing.append(f"{m.context or ''} {_key(m)[1]!r}".strip())
    assert not missing, (f"{len(missing)} strings lack a {catalogue.locale} translation "
                         "(python -m kimchi.i18n update, then translate po/"
                         f"{catalogue.locale}.po):\n" + "\n".join(missing[:50]))


def test_every_errcode_has_its_message_in_the_template(template: Any) -> None:
    contexts = {m.context: m.id for m in template if m.context}
    assert contexts == CATALOGUE


def test_translations_keep_the_placeholders(catalogue: Any) -> None:
    wrong = []
    for m in catalogue:
        if not m.id or not m.string:
            continue
        if isinstance(m.id, (tuple, list)):
            one, many = (set(FIELD.findall(x)) for x in m.id)
            for form in m.string:
                got = set(FIELD.findall(form))
                # a singular form may say "one" instead of {n}; nothing else may go
                if not got <= one | many or not (many - {"n"}) <= got:
                    wrong.append((m.id[0], form))
        elif set(FIELD.findall(m.string)) != set(FIELD.findall(m.id)):
            wrong.append((m.id, m.string))
    assert not wrong, f"placeholders differ in {catalogue.locale}: {wrong[:20]}"


def test_error_messages_render_with_their_fields_in_every_language() -> None:
    """Formatting every message with its own fields works in every language (a typo in a
    translated ``{field}`` would fall back to English: not the case)."""
    for tag in i18n.TRANSLATED:
        for code, template in CATALOGUE.items():
            params = {name: f"<{name}>" for name in FIELD.findall(template)}
            text = i18n.reason(code, params, tag)
            assert text.startswith(f"{code}: ")
            assert text != f"{code}: {template.format(**params)}", (tag, code, "untranslated")
            for value in params.values():
                assert value in text, (tag, code, value)


def test_compiled_catalogues_are_those_of_the_po_files() -> None:
    for locale in LOCALES:
        mo, ui = i18n.compiled(locale)
        out = i18n.LOCALE_DIR / locale
        assert (out / "LC_MESSAGES" / "kimchi.mo").read_bytes() == mo, (
            f"kimchi/locale/{locale} is stale: python -m kimchi.i18n compile")
        assert (out / "webui.json").read_text(encoding="utf-8") == ui, (
            f"kimchi/locale/{locale}/webui.json is stale: python -m kimchi.i18n compile")
        data = json.loads(ui)
        assert data["Sign in"] and all(v for v in data.values())


def test_plural_forms_are_those_the_uis_code_applies() -> None:
    """webui/js/core/i18n.js picks a plural form per language with the rule of the
    catalogue's Plural-Forms header: they must agree."""
    source = (i18n.ROOT / "webui" / "js" / "core" / "i18n.js").read_text()
    expected = {"pt_BR": ("nplurals=2; plural=(n > 1);", "'pt-BR': (n) => (n > 1 ? 1 : 0)"),
                "zh_CN": ("nplurals=1; plural=0;", "'zh-CN': () => 0")}
    for locale, (header, js) in expected.items():
        text = (i18n.PO_DIR / f"{locale}.po").read_text(encoding="utf-8")
        assert f'"Plural-Forms: {header}\\n"' in text
        assert js in source


@pytest.mark.parametrize("accept, choice, expected", [
    (None, None, "en"),
    ("pt-BR", None, "pt-BR"),
    ("pt-br", None, "pt-BR"),
    ("pt", None, "pt-BR"),
    ("pt-PT", None, "pt-BR"),
    ("zh-CN,zh;q=0.9", None, "zh-CN"),
    ("zh-Hans-CN", None, "zh-CN"),
    ("zh-TW", None, "en"),
    ("zh-Hant", None, "en"),
    ("fr-FR, de;q=0.9", None, "en"),
    ("fr, zh-CN;q=0.3, pt-BR;q=0.7", None, "pt-BR"),
    ("en-GB, pt-BR;q=0.8", None, "en"),
    ("pt-BR;q=0, zh-CN;q=0.1", None, "zh-CN"),
    ("*", None, "en"),
    ("pt-BR;q=abc, zh-CN;q=0.5", None, "zh-CN"),
    ("zh-CN", "pt-BR", "pt-BR"),
    ("zh-CN", "pt_BR", "pt-BR"),
    ("zh-CN", "klingon", "zh-CN"),
    ("pt-BR", "en", "en"),
])
def test_the_language_of_a_request(accept: str | None, choice: str | None,
                                   expected: str) -> None:
    assert i18n.negotiate(accept, choice) == expected


def test_a_reason_in_portuguese_and_in_chinese_keeps_code_and_values() -> None:
    err = KimchiError("KCHVM0010E", action="start", name="web1", state="running")
    assert i18n.reason(err.errcode, err.params, "en") == err.reason
    assert (i18n.reason(err.errcode, err.params, "pt-BR")
            == "KCHVM0010E: Não é possível start a máquina virtual web1: ela está running")
    assert i18n.reason(err.errcode, err.params, "zh-CN") == (
        "KCHVM0010E: 无法对虚拟机 web1 执行 start：它处于 running 状态")
    # a missing field: the English message, as kimchi.errors.message does
    assert i18n.reason("KCHVM0002E", {}, "pt-BR") == "KCHVM0002E: Virtual machine {name} does " \
                                                     "not exist"


def test_the_pages_strings_are_its_texts_and_attributes_but_untranslated_parts() -> None:
    html = """<html><head><title>kimchi</title><script>var x = "not this";</script></head>
    <body><p class="a">Installation media <span>found</span>.</p>
    <input placeholder="a path" title="  Folder   to scan "><img alt="" src="x.svg">
    <span translate="no">qemu+ssh://root@h2/system <b>nor this</b></span>
    <p>Back <br> here</p></body></html>"""
    found = [text for _line, text in i18n.page_strings(html)]
    assert found == ["kimchi", "Installation media", "found", "a path", "Folder to scan",
                     "Back", "here"]


def test_the_extractor_gives_each_errcode_as_the_context() -> None:
    source = b'CATALOGUE: dict[str, str] = {\n    "KCHX0001E": "Thing {name} " "is gone",\n}\n'
    out = list(i18n.extract_errors(io.BytesIO(source), [], [], {}))
    assert [(line, func, msgs) for line, func, msgs, _c in out] == [
        (2, "pgettext", ("KCHX0001E", "Thing {name} is gone"))]
