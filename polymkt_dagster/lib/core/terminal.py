"""Terminal output that text from users and data files cannot break or take over.

Market questions, dataset names and error messages reach the terminal through Rich, which
reads ``[...]`` as markup (``[/]`` in a question raised ``MarkupError``) and passes ANSI
escape sequences through (a question could clear the screen or retitle the window).
``SafeConsole`` shows every control character as a visible escape (``\\x1b``) and, should
text still not parse as markup, prints it literally instead of failing; ``escape`` is for
user text put inside our own markup.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape as _markup_escape
from rich.text import Text

# C0 controls but newline and tab, DEL, and the C1 controls (0x9b is a one-byte CSI)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def escape(text: object) -> str:
    """User or data text made safe to put inside a Rich markup string."""
    return _markup_escape(printable(str(text)))


class SafeConsole(Console):
    """A Rich console whose output no string can corrupt (see the module docstring)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        text = printable(text)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            kwargs["markup"] = False
            return super().render_str(text, **kwargs)
