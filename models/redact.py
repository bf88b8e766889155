"""Secrets out of whatever is shown: one helper for every URL the device or the fleet prints,
logs, puts in an error, a ``repr`` or the health document.

A URL carries a secret in its userinfo (``mqtts://USER:PASSWORD@HOST``,
``postgresql://USER:PASSWORD@HOST/DB``) or in a query parameter
(``postgresql://USER@HOST/DB?password=...``, ``?token=...``); a libpq key/value string
(``host=HOST password=...``) in a ``password=`` pair. :func:`redact_url` shows the URL with
each of them as ``***``; :func:`url_secrets` lists them (as written and percent-decoded),
and :func:`scrub` takes them out of a text that may quote them, such as a database driver's
error (``invalid percent-encoded token: "..."``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# Query parameters (and libpq keywords) whose value is a secret, compared in lower case.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "sslpassword",
        "token",
        "access_token",
        "secret",
        "api_key",
        "apikey",
    }
)
_KEYWORD_PAIR = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_KEYS)) + r")(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)"
)


def _split(url: str) -> tuple[str, str | None, str, str]:
    """``scheme://`` (or ""), the userinfo (None: none), the host part, and ``?query...``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    head, q, query = rest.partition("?")
    if "@" in head:
        userinfo, _, host = head.rpartition("@")
        return scheme + sep, userinfo, host, q + query
    before = rest.split("@", 1)[0]
    port = re.match(r"[^:/?#]*:\d+(?:[/?#]|$)", before)
    if "@" in rest and ":" in before and not port:  # a password with a raw ? in it
        userinfo, _, after = rest.rpartition("@")
        host, q, query = after.partition("?")
        return scheme + sep, userinfo, host, q + query
    return scheme + sep, None, head, q + query


def _query_pairs(tail: str) -> list[tuple[str, str | None]]:
    """``?a=1&b`` -> [("a", "1"), ("b", None)] (the key as written)."""
    pairs: list[tuple[str, str | None]] = []
    for item in re.split(r"[&;]", tail[1:]) if tail.startswith("?") else ():
        key, eq, value = item.partition("=")
        pairs.append((key, value if eq else None))
    return pairs


def _is_keywords(text: str) -> bool:
    """Whether ``text`` is a libpq key/value string (``host=H password=P``), not a URL."""
    return "://" not in text and _KEYWORD_PAIR.search(text) is not None


def _is_secret(key: str) -> bool:
    return unquote(key).strip().lower() in SECRET_KEYS


def redact_url(url: str) -> str:
    """``url`` with its secrets as ``***``: the password of its userinfo (``USER:***@``),
    the value of a ``password=`` (``token=``, ``sslpassword=``...) query parameter, or of a
    libpq ``password=`` pair. A URL without them comes back as it was."""
    if _is_keywords(url):
        return _KEYWORD_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", url)
    scheme, userinfo, host, tail = _split(url)
    shown = ""
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        shown = f"{user}:{MASK}@" if colon else f"{userinfo}@"
    if tail:
        fragment = ""
        if "#" in tail:
            tail, _, frag = tail.partition("#")
            fragment = "#" + frag
        pairs = _query_pairs(tail)
        tail = (
            "?"
            + "&".join(k if v is None else f"{k}={MASK if _is_secret(k) else v}" for k, v in pairs)
            + fragment
        )
    return f"{scheme}{shown}{host}{tail}"


def url_secrets(url: str) -> tuple[str, ...]:
    """Every secret ``url`` carries (see :func:`redact_url`), as written and decoded."""
    found: list[str] = []
    if _is_keywords(url):
        for m in _KEYWORD_PAIR.finditer(url):
            found.append(m.group(3).strip("'"))
    else:
        _scheme, userinfo, _host, tail = _split(url)
        if userinfo is not None and ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        for key, value in _query_pairs(tail.partition("#")[0]):
            if value is not None and _is_secret(key):
                found.append(value)
    out: list[str] = []
    for secret in found:
        for form in (secret, unquote(secret)):
            if form and form not in out:
                out.append(form)
    return tuple(out)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (the longest first) as ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
