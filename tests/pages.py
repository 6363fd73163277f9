"""What the browser tests share: opening a page of the UI once it is live."""

from __future__ import annotations

from typing import Any

from tests.conftest import Kimchi


def open_page(page: Any, k: Kimchi, where: str) -> None:
    """Open the page ``where`` (``#/<where>``) and wait until the event stream is live and
    the page is shown."""
    page.goto(f"{k.url}/#/{where}")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector(f"#{where}:not([hidden])")
