"""Custom error pages (OpenShift's ``httpErrorCodePages``): a ConfigMap in, HAProxy error files out (pure).

The ConfigMap's keys ``error-page-503.http`` and ``error-page-404.http`` each hold a complete HTTP
response (status line, headers, empty line, body) that HAProxy sends as it is. A page HAProxy could
not load is left out (the built-in page stays) and reported, so one bad page never makes the whole
configuration invalid.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CODES = (503, 404)
# HAProxy loads an error file into one buffer and keeps tune.maxrewrite free for header rewrites.
MAX_SIZE = 32768 - 8192
_STATUS_LINE = re.compile(r"HTTP/1\.[01] [1-5][0-9][0-9]( [^\r\n]*)?\r?\n")


def key(code: int) -> str:
    return f"error-page-{code}.http"


def page_problem(text: str) -> str:
    """Why HAProxy could not send ``text`` as a complete response; "" when it can."""
    if not _STATUS_LINE.match(text):
        return "does not start with an HTTP/1.x status line"
    if "\r\n\r\n" not in text and "\n\n" not in text:
        return "has no empty line after its headers"
    if len(text.encode()) > MAX_SIZE:
        return f"is larger than {MAX_SIZE} bytes"
    return ""


def error_pages(configmap: Mapping[str, Any] | None) -> tuple[dict[int, str], list[str]]:
    """The usable pages of a ConfigMap object by status code, and one line per page left out."""
    data = (configmap or {}).get("data") or {}
    pages: dict[int, str] = {}
    problems: list[str] = []
    for code in CODES:
        text = data.get(key(code))
        if text is None:
            continue
        if problem := page_problem(text):
            problems.append(f"error page {key(code)} {problem}: HAProxy's own page is served")
        else:
            pages[code] = text
    return pages, problems
