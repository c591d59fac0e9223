"""Finding the secret parts of URLs and DSNs by parsing them (``dback_core.plugin.credentials``),
and masking them wherever they are written (``dback_core.plugin.redaction``)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from dback_core.plugin import credentials
from dback_core.plugin.credentials import find, is_secret_name, mask_userinfo, parse_url
from dback_core.plugin.redaction import SHORTEST, forms, redact, remember

AWKWARD = "a b@c:d%zz/fä€"


@pytest.mark.parametrize(
    ("value", "shown", "secrets"),
    [
        # the user-info password ends at the last @ that a host follows
        (
            f"postgresql://app:{AWKWARD}@db.example:5432/dback",
            "postgresql://app:***@db.example:5432/dback",
            {AWKWARD},
        ),
        ("redis://:p@ss@cache:6379/0", "redis://:***@cache:6379/0", {"p@ss"}),
        ("redis://:pw/with/slashes@cache/0", "redis://:***@cache/0", {"pw/with/slashes"}),
        ("redis://:what?now@cache/0", "redis://:***@cache/0", {"what?now"}),
        # percent-encoded: masked as written, known decoded too
        (
            "postgresql://app:p%40ss%20w@db/dback",
            "postgresql://app:***@db/dback",
            {"p%40ss%20w", "p@ss w"},
        ),
        # secret query arguments, any case; others kept
        (
            "unix:///run/redis.sock?db=2&password=hunter2",
            "unix:///run/redis.sock?db=2&password=***",
            {"hunter2"},
        ),
        (
            "rediss://u:one1@cache:6380/0?ssl_password=two2&ssl_cert_reqs=none",
            "rediss://u:***@cache:6380/0?ssl_password=***&ssl_cert_reqs=none",
            {"one1", "two2"},
        ),
        ("https://api.example/x?Token=abc+def&API_KEY=k1", None, {"abc+def", "abc def", "k1"}),
        ("postgresql://u:pw@host/db?options=a@b", "postgresql://u:***@host/db?options=a@b", {"pw"}),
        # host lists, IPv6, no host at all
        ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db", {"pw"}),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db", {"pw"}),
        ("postgresql://u:pw@/db?host=/run/pg", "postgresql://u:***@/db?host=/run/pg", {"pw"}),
        # several URLs in one value (a Sentinel address list), by comma or space
        (
            "redis://:one@s1:26379,redis://:two@s2:26379 redis://:three@s3",
            "redis://:***@s1:26379,redis://:***@s2:26379 redis://:***@s3",
            {"one", "two", "three"},
        ),
        # key=value DSNs, quoted or not
        (
            "host=db port=5432 password='a b\\'c' dbname=x",
            "host=db port=5432 password=*** dbname=x",
            {"a b\\'c", "a b'c"},
        ),
        (
            "host=db password=pl\\ ain user=me",
            "host=db password=*** user=me",
            {"pl\\ ain", "pl ain"},
        ),
        # no host-shaped part after any @ (a mistyped port): still masked
        ("postgresql://u:p@ss w@db:54x2/d", "postgresql://u:***@db:54x2/d", {"p@ss w"}),
        ("redis://:pw pw@cache:port/0", "redis://:***@cache:port/0", {"pw pw"}),
        # nothing secret
        ("redis://cache.example:6379/0", "redis://cache.example:6379/0", set()),
        ("postgresql://app@db/dback", "postgresql://app@db/dback", set()),
        ("127.0.0.1:26379,127.0.0.2:26379", "127.0.0.1:26379,127.0.0.2:26379", set()),
        ("just some text", "just some text", set()),
    ],
)
def test_secrets_are_found_by_parsing(value, shown, secrets):
    found = find(value)
    if shown is not None:
        assert found.text == shown
    assert set(found.secrets) == secrets
    for secret in secrets:
        assert secret not in found.text


def test_the_password_leaves_the_url_for_the_library():
    parts = parse_url(f"postgresql://us%40er:{AWKWARD}@db:5432/dback?sslmode=require")
    assert parts is not None
    assert parts.password_value == AWKWARD
    assert parts.user_value == "us@er"
    bare = parts.without_password().render(masked=False)
    assert bare == "postgresql://us%40er@db:5432/dback?sslmode=require"
    assert (
        parts.with_path("/postgres")
        .without_password()
        .render(masked=False)
        .endswith("@db:5432/postgres?sslmode=require")
    )
    query = parse_url(f"unix:///run/r.sock?db=1&password={quote(AWKWARD, safe='')}")
    assert query is not None and query.password_value == AWKWARD
    assert query.without_password().render(masked=False) == "unix:///run/r.sock?db=1"
    # ``unix:///`` keeps its empty host
    assert query.render() == "unix:///run/r.sock?db=1&password=***"


def test_a_user_without_a_raw_at_is_reencoded():
    parts = parse_url("redis://me:pw@cache/0")
    assert (
        parts is not None and parts.without_password().render(masked=False) == "redis://me@cache/0"
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("PWD", True),
        ("Pass", True),
        ("auth", True),
        ("key", True),
        ("sslpassword", True),
        ("ssl_password", True),
        ("access_token", True),
        ("api-key", True),
        ("client.secret", True),
        ("sslkey", False),  # a file's path
        ("authSource", False),
        ("keyspace", False),
        ("db", False),
        ("passive", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot reach redis://:p@ss:w@host:6379/0: refused",
            "cannot reach redis://:***@host:6379/0: refused",
        ),
        ("x postgresql://u:hunter2@db:5432/d, y", "x postgresql://u:***@db:5432/d, y"),
        ("'redis://u:s3@h'", "'redis://u:***@h'"),
        ("a redis://u:b@h,redis://c:d@h2 z", "a redis://u:***@h,redis://c:***@h2 z"),
        ("bad port in http://u:p@w@host:8o8o/x", "bad port in http://u:***@host:8o8o/x"),
        # no user-info: left alone, even with an e-mail address later on the line
        ("redis://127.0.0.1:6379/0 refused, ask admin@example.org", None),
        ("ws://127.0.0.1:3000 serving", None),
    ],
)
def test_the_text_safety_net_masks_user_info(text, expected):
    assert mask_userinfo(text) == (expected if expected is not None else text)


def test_known_secrets_are_masked_in_every_written_form():
    secret = "zq " + AWKWARD
    remember(secret)
    for form in forms(secret):
        assert redact(f"<{form}>") == "<***>", form
    for written in (
        secret,
        quote(secret, safe=""),
        quote(secret),
        repr(secret),
        json.dumps(secret),
        json.dumps(secret, ensure_ascii=False),
        repr(secret.encode()),
    ):
        assert "zq" not in redact(f"error: {written}!"), written


def test_short_secrets_are_not_masked_by_value():
    remember("ab1")
    assert len("ab1") < SHORTEST
    assert redact("tab1e") == "tab1e"


def test_the_mask_is_the_one_everywhere():
    assert credentials.MASK == "***"
