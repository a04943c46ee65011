"""MkDocs hook: the docstrings cross-reference with Sphinx roles (:func:`x`), which Markdown
renders as ":func:" before the code; drop the role and keep the code."""
from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|obj|exc):(?=<code)")


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub("", html)
