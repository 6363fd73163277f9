"""The API guide stays true to the error catalogue."""

from pathlib import Path

from kimchi.errors import CATALOGUE

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_error_code_is_documented_with_its_message():
    text = DOC.read_text()
    for code, message in CATALOGUE.items():
        assert f"| `{code}` |" in text, code
        assert message in text, code
