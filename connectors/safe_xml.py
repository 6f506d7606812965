"""XML from outside (bank statements, FX rate files): parsed by defusedxml with any DOCTYPE refused (no entity
expansion, no external fetch), every failure one :class:`InputError` naming the file (and the line)."""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DET  # noqa: N814
from defusedxml import DefusedXmlException

from canonical.errors import InputError


def parse_untrusted(data: bytes | str, name: str) -> Element:
    """The document's root; ``name`` says which file in the errors."""
    try:
        root: Element = DET.fromstring(data, forbid_dtd=True)
    except ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        reason = re.sub(r":? *line \d+, column \d+$", "", str(exc))
        raise InputError(f"{name}:{line}: not well-formed XML (column {col}): {reason}") from None
    except DefusedXmlException as exc:
        raise InputError(f"{name}: refused unsafe XML ({type(exc).__name__}: a DOCTYPE or entity declarations)") \
            from None
    return root
