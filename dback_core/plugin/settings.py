"""Plugin settings, declared once by the plugin and parsed, checked and shown by the core.

A plugin lists its environment variables as ``Setting`` values in a ``dback_settings``
attribute of what its entry point names (a class, module or instance)::

    class MyPlugin:
        dback_settings = (
            Setting("DBACK_MINE_INTERVAL", float, 3.0, "seconds between updates", minimum=0.1),
            Setting("DBACK_MINE_TOKEN", help="API token", secret=True),
            Setting("DBACK_MINE_URL", help="mine://user:password@host/db", url=True),
        )

        def __init__(self) -> None:
            values = read(self.dback_settings)
            self.interval = values["DBACK_MINE_INTERVAL"]

The core reads the declaration when it loads the plugin, before constructing it, so a bad
value stops ``dback serve`` with the same words for every plugin (``SettingsError`` naming
the variable), and ``dback plugins``, ``dback serve --help`` and the configuration docs list
the same variables. Values come from the process environment, as the plugin sees it; a
variable that is unset or blank takes its default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dback_core.plugin import credentials
from dback_core.plugin.errors import SettingsError
from dback_core.plugin.redaction import REDACTED, redact, remember

#: The attribute a plugin declares its settings in.
SETTINGS_ATTRIBUTE = "dback_settings"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_KINDS: dict[type, str] = {
    str: "text",
    int: "an integer",
    float: "a number",
    bool: "a boolean (1/0, yes/no)",
}


def parse_bool(text: str) -> bool | None:
    """The one reading of a yes/no word for every setting and record: True for ``1``,
    ``true``, ``yes``, ``on``, False for ``0``, ``false``, ``no``, ``off`` (any case, spaces
    around ignored), None for anything else."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    return False if word in _FALSE else None


@dataclass(frozen=True)
class Setting:
    """One environment variable of a plugin.

    ``type`` is ``str``, ``int``, ``float`` or ``bool``; numbers must be finite and at least
    ``minimum`` when given; ``choices`` (text only) are matched ignoring case and returned as
    declared. ``check`` may raise ``ValueError("must ...")`` for anything else about the
    value; its message continues the variable's name.

    A ``secret`` (a token, a password) is never shown, only whether it is set. A ``url`` is
    a URL or DSN that may carry a password (user-info, ``?password=``) - or several URLs, or
    a key=value DSN: it is shown with those parts masked and the rest (hosts, ports,
    database) visible (``dback_core.plugin.credentials``). Either way, once the value is
    read its secrets are masked exactly in every log line and error (``redaction``).
    """

    variable: str
    type: type = str
    default: Any = None
    help: str = ""
    secret: bool = False
    url: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    check: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        if self.type not in _KINDS:
            raise TypeError(f"{self.variable}: type must be str, int, float or bool")
        if (self.secret or self.url) and self.type is not str:
            raise TypeError(f"{self.variable}: only a str setting can be secret or a url")

    def parse(self, environ: Mapping[str, str]) -> Any:
        """The value in ``environ``, or the default when unset or blank."""
        raw = environ.get(self.variable, "").strip()
        if not raw:
            return self.default
        self.remember(raw)
        return self.validate(self._convert(raw), raw)

    def remember(self, raw: str) -> None:
        """Register what ``raw`` holds that must never be shown: the whole value of a
        secret, the secret parts of a URL (``redaction.remember``)."""
        if self.secret:
            remember(raw)
        elif self.url:
            remember(*credentials.find(raw).secrets)

    def shown(self, raw: str) -> str:
        """``raw`` as operators may see it: ``***`` for a secret, a URL with its secret
        parts masked, anything else with known secrets masked (``redact``)."""
        if self.secret:
            return REDACTED
        if self.url:
            return redact(credentials.find(raw).text)
        return redact(raw)

    def validate(self, value: Any, raw: str | None = None) -> Any:
        """``value`` when it keeps to ``minimum`` and ``check``, else ``SettingsError``;
        ``raw`` is the text it was read from, quoted in the error (else ``value`` is)."""
        shown = repr(self.shown(raw if raw is not None else str(value)))
        if self.choices and value not in self.choices:
            listed = ", ".join(repr(choice) for choice in self.choices)
            raise SettingsError(self.variable, f"must be one of {listed}, got {shown}")
        if self.minimum is not None and value < self.minimum:
            raise SettingsError(self.variable, f"must be at least {self.minimum:g}, got {shown}")
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as error:
                raise SettingsError(self.variable, str(error)) from None
        return value

    def _convert(self, raw: str) -> Any:
        if self.choices:
            chosen = {choice.lower(): choice for choice in self.choices}.get(raw.lower())
            if chosen is None:
                listed = ", ".join(repr(choice) for choice in self.choices)
                raise SettingsError(self.variable, f"must be one of {listed}, got {raw!r}")
            return chosen
        if self.type is bool:
            flag = parse_bool(raw)
            if flag is None:
                raise SettingsError(self.variable, f"must be {_KINDS[bool]}, got {raw!r}")
            return flag
        try:
            value = self.type(raw)
        except ValueError:
            kind = _KINDS[self.type]
            raise SettingsError(self.variable, f"must be {kind}, got {raw!r}") from None
        if self.type is float and not math.isfinite(value):
            raise SettingsError(self.variable, f"must be a finite number, got {raw!r}")
        return value

    @property
    def shown_default(self) -> str | None:
        """The default as the docs and ``--help`` write it (``3`` for 3.0; a secret's
        masked), or None."""
        if self.default is None:
            return None
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return self.shown(str(self.default)) if self.secret or self.url else str(self.default)

    def describe(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """What ``dback plugins --json`` shows: the value as set (masked when secret or
        holding a password), or None when unset, beside the declaration."""
        raw = environ.get(self.variable, "").strip()
        if raw:
            self.remember(raw)
        hidden = (self.secret or self.url) and self.default is not None
        return {
            "variable": self.variable,
            "type": self.type.__name__,
            "default": self.shown_default if hidden else self.default,
            "shown_default": self.shown_default,
            "value": self.shown(raw) if raw else None,
            "secret": self.secret,
            "url": self.url,
            "choices": list(self.choices),
            "minimum": self.minimum,
            "help": self.help,
        }


def declared(plugin: Any) -> tuple[Setting, ...]:
    """The settings ``plugin`` declares (none when it declares none).

    Raises ``TypeError`` for a declaration that is not a sequence of ``Setting``: a plugin
    author's mistake, reported as that plugin failing to load.
    """
    settings = getattr(plugin, SETTINGS_ATTRIBUTE, ())
    if isinstance(settings, str | bytes) or not isinstance(settings, Iterable):
        raise TypeError(
            f"{SETTINGS_ATTRIBUTE} must be a sequence of dback_core.plugin.settings.Setting"
        )
    settings = tuple(settings)
    for setting in settings:
        if not isinstance(setting, Setting):
            raise TypeError(f"{SETTINGS_ATTRIBUTE} holds {setting!r}, not a Setting")
    return settings


def read(settings: Iterable[Setting], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value keyed by variable, from ``environ`` (default: the process
    environment); the first bad value raises ``SettingsError`` naming its variable."""
    environ = os.environ if environ is None else environ
    return {setting.variable: setting.parse(environ) for setting in settings}
