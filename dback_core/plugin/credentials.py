"""Finding the secret parts of a URL or DSN by parsing it, so they can be masked exactly.

A setting such as ``DBACK_POSTGRES_DSN`` or ``DBACK_REDIS_URL`` is mostly what an operator
needs to see (scheme, user, hosts, database) and partly what nobody may see (a password in
the user-info part or the query string). A pattern over the text gets the boundary wrong as
soon as a password holds a space, ``@``, ``:`` or ``/``; this module reads the value the way
a connection library would and returns both a masked rendering and the exact secret values,
which the log formatter then masks wherever they appear.

Understood here:

- URLs ``scheme://user:password@host:port,host2/path?query#fragment``. The user-info part
  ends at the *last* ``@`` that is followed by a host-shaped part (hosts with optional ports,
  then ``/``, ``?``, ``#`` or the end), so a password may hold ``@``, ``:``, ``/``, spaces,
  ``%`` and any other character except a raw ``?`` or ``#`` before that ``@`` in a value
  that also has a query (write those as ``%3F`` and ``%23``). Query arguments whose name is
  a secret word (``password``, ``token``, ``key``... see ``is_secret_name``) are masked too.
- Several URLs in one value, separated by commas or spaces (a list of Sentinel addresses).
- ``unix:///path?password=...``, ``rediss://``, and any other scheme alike.
- PostgreSQL key=value DSNs (``host=db password='a b\\'c' dbname=x``), quoting included.

Anything else is returned as it is, with no secret found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, unquote_plus

#: What a masked secret is shown as.
MASK = "***"

#: Words that make a query argument or key=value key a secret, whatever their case.
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "pass", "token", "secret", "key", "auth"})
#: Endings that make a longer name secret too (``sslpassword``, ``access_token``).
_SECRET_ENDINGS = ("password", "passwd", "token", "secret")

#: Where a URL starts: its scheme and ``://``.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Where a second URL starts in one value: a scheme after a comma or a space.
_NEXT_URL = re.compile(r"(?<=[,\s])[A-Za-z][A-Za-z0-9+.-]*://")
#: One host of a host list: ``[v6]`` or a name/address, with an optional numeric port.
_HOST = r"(?:\[[0-9A-Za-z:.%]*\]|[^\s/?#@,:\[\]]+)?(?::\d*)?"
#: A host list and what may follow it: the host-shaped part after the user-info's ``@``.
_HOSTS_THEN = re.compile(rf"{_HOST}(?:,{_HOST})*(?=[/?#]|$)")
#: A key=value DSN: it starts with ``key=`` (and is not a URL).
_KEY_VALUE_START = re.compile(r"\s*[A-Za-z_][\w.-]*\s*=")
#: One ``key = value`` pair of a key=value DSN; a value is quoted (``\\'`` and ``\\\\``
#: escapes) or runs to the next space (backslash escapes allowed).
_PAIR = re.compile(
    r"(?P<key>[A-Za-z_][\w.-]*)\s*=\s*(?P<value>'(?:\\.|[^\\'])*'?|(?:\\.|[^\s\\])*)"
)
#: The safety net over free text: ``scheme://user:`` then a password without spaces.
_TEXT_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:(?P<rest>\S*)")
#: What may follow a host in free text.
_TEXT_HOSTS_THEN = re.compile(rf"{_HOST}(?:,{_HOST})*(?=[/?#\s'\"),;>\]}}]|$)")


def is_secret_name(name: str) -> bool:
    """Whether a query argument or DSN key named ``name`` holds a secret: one of
    ``SECRET_WORDS`` (any case), a name made of words joined by ``_``, ``-`` or ``.`` of
    which one is (``api_key``, ``auth-token``), or one ending in ``password``, ``passwd``,
    ``token`` or ``secret`` (``sslpassword``)."""
    lowered = unquote_plus(name).strip().lower()
    if lowered in SECRET_WORDS or lowered.endswith(_SECRET_ENDINGS):
        return True
    return any(word in SECRET_WORDS for word in re.split(r"[_.-]", lowered))


@dataclass(frozen=True)
class Found:
    """A value with its secrets masked (``text``) and those secrets as a library reads them
    (percent-decoded, unquoted) and as written, for masking them wherever else they appear."""

    text: str
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class URL:
    """One URL taken apart, every part as written (nothing decoded).

    ``user`` and ``password`` are None when absent; ``query`` holds each argument as
    ``(name, value)`` with value None for an argument without ``=``.
    """

    scheme: str
    user: str | None
    password: str | None
    hosts: str
    path: str
    query: tuple[tuple[str, str | None], ...]
    fragment: str | None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret as written and decoded: the user-info password and the values of
        secret query arguments."""
        found: list[str] = []
        if self.password:
            found += [self.password, unquote(self.password)]
        for name, value in self.query:
            if value and is_secret_name(name):
                found += [value, unquote_plus(value), unquote(value)]
        return tuple(dict.fromkeys(found))

    @property
    def password_value(self) -> str | None:
        """The password a client library would send: the user-info one, else a ``password``
        query argument (decoded), else None."""
        if self.password is not None:
            return unquote(self.password)
        for name, value in self.query:
            if name == "password" and value is not None:
                return unquote_plus(value)
        return None

    @property
    def user_value(self) -> str | None:
        """The user name, decoded, or None."""
        return unquote(self.user) if self.user else None

    @property
    def database(self) -> str:
        """The path without its leading ``/``, decoded (a database name or number)."""
        return unquote(self.path.lstrip("/"))

    def render(self, *, masked: bool = True) -> str:
        """The URL as text: every secret replaced by ``***`` unless ``masked`` is False."""
        userinfo = ""
        if self.user is not None or self.password is not None:
            userinfo = self.user or ""
            if self.password is not None:
                userinfo += ":" + (MASK if masked else self.password)
            userinfo += "@"
        query = "&".join(
            name if value is None else f"{name}={self._shown(name, value, masked)}"
            for name, value in self.query
        )
        text = f"{self.scheme}://{userinfo}{self.hosts}{self.path}"
        text += f"?{query}" if query else ""
        return text + (f"#{self.fragment}" if self.fragment is not None else "")

    @staticmethod
    def _shown(name: str, value: str, masked: bool) -> str:
        return MASK if masked and is_secret_name(name) else value

    def without_password(self) -> URL:
        """This URL for a client library that is given the password separately: no password
        in the user-info part nor a ``password`` query argument, the user name re-encoded so
        that any library splits the user-info where this module did."""
        user = quote(unquote(self.user), safe="") if self.user else None
        query = tuple((name, value) for name, value in self.query if name != "password")
        return replace(self, user=user, password=None, query=query)

    def with_path(self, path: str) -> URL:
        """This URL naming another path (another database)."""
        return replace(self, path=path)


def parse_url(text: str) -> URL | None:
    """``text`` as one URL, or None when it does not start with ``scheme://``."""
    start = _SCHEME.match(text)
    if start is None:
        return None
    scheme = start.group()[:-3]
    rest = text[start.end() :]
    user: str | None = None
    password: str | None = None
    at = _userinfo_end(rest)
    if at is not None:
        userinfo, rest = rest[:at], rest[at + 1 :]
        name, colon, secret = userinfo.partition(":")
        user = name
        password = secret if colon else None
    hosts_end = _first_of(rest, "/?#")
    hosts, rest = rest[:hosts_end], rest[hosts_end:]
    rest, hash_sign, fragment = rest.partition("#")
    path, question, query_text = rest.partition("?")
    query = tuple(_argument(part) for part in query_text.split("&") if part) if question else ()
    return URL(scheme, user, password, hosts, path, query, fragment if hash_sign else None)


def _userinfo_end(rest: str) -> int | None:
    """Where the user-info part of ``rest`` (a URL after ``scheme://``) ends: the last
    ``@`` followed by a host-shaped part, looked for first before the query (so an ``@`` in
    a query argument is not taken for it), then anywhere (a password holding ``?``). With no
    host-shaped part at all (a port mistyped as ``host:543a``), the last ``@`` still ends
    it: a password must be masked even in a URL that will not connect."""
    before_query = rest[: _first_of(rest, "?#")]
    for region in (before_query, rest):
        for index in range(len(region) - 1, -1, -1):
            if region[index] == "@" and _HOSTS_THEN.match(region, index + 1):
                return index
    for region in (before_query, rest):
        if "@" in region:
            return region.rindex("@")
    return None


def _first_of(text: str, characters: str) -> int:
    """The index of the first of ``characters`` in ``text``, or its length."""
    found = [index for index in map(text.find, characters) if index >= 0]
    return min(found, default=len(text))


def _argument(part: str) -> tuple[str, str | None]:
    name, equals, value = part.partition("=")
    return (name, value if equals else None)


def find(value: str) -> Found:
    """``value`` (a URL, several URLs, a key=value DSN or plain text) with its secrets
    masked, and those secrets."""
    if _SCHEME.match(value.lstrip()):
        return _find_in_urls(value)
    if _KEY_VALUE_START.match(value):
        return _find_in_pairs(value)
    return Found(value)


def _find_in_urls(value: str) -> Found:
    """Each URL of ``value`` masked: a new one starts at a scheme after a comma or space."""
    starts = [0, *(match.start() for match in _NEXT_URL.finditer(value))]
    pieces: list[str] = []
    secrets: list[str] = []
    for start, end in zip(starts, [*starts[1:], len(value)], strict=True):
        chunk = value[start:end]
        body = chunk.rstrip(", \t\n")
        separator = chunk[len(body) :]
        leading = body[: len(body) - len(body.lstrip())]
        url = parse_url(body.lstrip())
        if url is None:
            pieces.append(chunk)
            continue
        pieces.append(leading + url.render() + separator)
        secrets += url.secrets
    return Found("".join(pieces), tuple(dict.fromkeys(secrets)))


def _find_in_pairs(value: str) -> Found:
    """A key=value DSN with the values of secret keys masked."""
    pieces: list[str] = []
    secrets: list[str] = []
    position = 0
    for match in _PAIR.finditer(value):
        if not is_secret_name(match["key"]) or not match["value"]:
            continue
        written = match["value"]
        pieces.append(value[position : match.start("value")] + MASK)
        position = match.end("value")
        inner = written[1:-1] if written.startswith("'") and written.endswith("'") else written
        secrets += [inner, re.sub(r"\\(.)", r"\1", inner.lstrip("'"))]
    pieces.append(value[position:])
    return Found("".join(pieces), tuple(dict.fromkeys(secret for secret in secrets if secret)))


def mask_userinfo(text: str) -> str:
    """Free ``text`` (a log line) with any URL's user-info password masked: a safety net
    for URLs no setting declared. The password is taken to hold no whitespace and to end
    before the next URL (a declared one is masked exactly, by value, instead)."""
    if "://" not in text:
        return text
    pieces: list[str] = []
    position = search = 0
    while (match := _TEXT_USERINFO.search(text, search)) is not None:
        rest, offset = match["rest"], match.start("rest")
        following = _SCHEME.search(rest)
        if following is not None:
            rest = rest[: following.start()]
        search = offset + len(rest)
        at = _last_userinfo_at(rest)
        if at:
            pieces.append(text[position:offset] + MASK)
            position = offset + at
    pieces.append(text[position:])
    return "".join(pieces)


def _last_userinfo_at(rest: str) -> int | None:
    """The last ``@`` of ``rest`` (free text after ``scheme://user:``) followed by hosts,
    else its last ``@`` at all (a URL with a mistyped port)."""
    for index in range(len(rest) - 1, -1, -1):
        if rest[index] == "@" and _TEXT_HOSTS_THEN.match(rest, index + 1):
            return index
    return rest.rfind("@") if "@" in rest else None
