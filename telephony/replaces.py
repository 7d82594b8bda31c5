"""Attended transfer and call pick-up: the SIP ``Replaces`` header (RFC 3891). Pure functions, no I/O.

A ``Replaces: call-id;to-tag=T;from-tag=F[;early-only]`` header in a new INVITE names a dialog the receiver
holds, *from the receiver's point of view*: ``to-tag`` is compared with the receiver's local tag and
``from-tag`` with its remote tag (RFC 3891 section 3). The endpoint's handling (481/486/603, the new leg taking
over, BYE to the old one) is in ``SipEndpoint._match_replaces``; docs/TELEPHONY.md "Attended transfer".

A transferor asks for it with ``REFER`` whose Refer-To URI carries the header as a URI header
(``<sip:c@host?Replaces=call-id%3Bto-tag%3DT%3Bfrom-tag%3DF>``, RFC 3515 / RFC 3261 19.1.1):
:func:`split_uri_headers` takes such a URI apart, :func:`uri_with_replaces` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from .sip_message import ParseError, canonical

if TYPE_CHECKING:
    from .leg import CallLeg

__all__ = ["Replaces", "replaces_for", "split_uri_headers", "uri_with_replaces"]

# characters a Call-ID or tag may hold (RFC 3261 25.1 word / token); anything else is refused
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~()<>:\\\"/[]?{}@")
_MAX_LEN = 512


@dataclass(frozen=True)
class Replaces:
    """The dialog a Replaces header names (tags from the receiver's point of view)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, value: str) -> Replaces:
        """Parse a header value; raises ParseError when the Call-ID or either tag is missing or malformed."""
        if len(value) > _MAX_LEN:
            raise ParseError("Replaces header too long")
        parts = [p.strip() for p in value.split(";")]
        call_id = parts[0]
        if not call_id or not set(call_id) <= _WORD:
            raise ParseError(f"Replaces: bad Call-ID {call_id[:60]!r}")
        tags: dict[str, str] = {}
        early_only = False
        for part in parts[1:]:
            name, sep, val = part.partition("=")
            name = name.strip().lower()
            val = val.strip()
            if name == "early-only" and not sep:
                early_only = True
            elif name in ("to-tag", "from-tag") and sep:
                if not val or not set(val) <= _WORD or name in tags:
                    raise ParseError(f"Replaces: bad or repeated {name}")
                tags[name] = val
            elif not name:
                raise ParseError("Replaces: empty parameter")
            # other generic parameters are allowed and ignored (RFC 3891 6.1)
        if "to-tag" not in tags or "from-tag" not in tags:
            raise ParseError("Replaces: to-tag and from-tag are both required")
        return cls(call_id, tags["to-tag"], tags["from-tag"], early_only)

    def header(self) -> str:
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}" + (
            ";early-only" if self.early_only else "")


def replaces_for(leg: CallLeg, *, early_only: bool = False) -> Replaces:
    """The Replaces value that names ``leg``'s dialog to the *peer* of that leg (its local tag is our remote
    tag): what a transferor puts in the Refer-To it sends to the other party."""
    return Replaces(leg.call_id, to_tag=leg.remote_tag, from_tag=leg.local_tag, early_only=early_only)


def uri_with_replaces(uri: str, replaces: Replaces) -> str:
    """``uri`` with ``?Replaces=...`` (escaped) appended, for a Refer-To (attended transfer)."""
    base, headers = split_uri_headers(uri)
    headers = [(n, v) for n, v in headers if n != "Replaces"] + [("Replaces", replaces.header())]
    return base + "?" + "&".join(f"{n}={quote(v, safe='')}" for n, v in headers)


def split_uri_headers(uri: str) -> tuple[str, list[tuple[str, str]]]:
    """``sip:a@b;p?H1=v1&H2=v2`` -> (``sip:a@b;p``, [(canonical H1, unescaped v1), ...]). Raises ParseError
    on a header without ``=`` or an empty name."""
    base, sep, rest = uri.partition("?")
    if not sep:
        return uri, []
    headers: list[tuple[str, str]] = []
    for item in rest.split("&"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ParseError(f"bad URI header {item[:60]!r}")
        try:
            text = unquote(value, errors="strict")
        except UnicodeDecodeError as exc:
            raise ParseError(f"URI header {name[:30]!r} is not UTF-8") from exc
        if any(c in text for c in "\r\n\0"):
            raise ParseError("line break in a URI header value")
        headers.append((canonical(unquote(name.strip())), text))
    return base, headers
