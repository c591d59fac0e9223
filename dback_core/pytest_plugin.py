"""pytest fixtures for testing dback plugins, registered through the ``pytest11`` entry point.

Installed with ``pip install 'dback-core[testing]'`` (which brings pytest-asyncio); pytest
then offers, in every project, without a conftest:

- ``dback_environ``: ``os.environ`` without the developer's ``DBACK_*`` variables, so a
  ``DBACK_PLUGINS`` or ``DBACK_MOCK_INTERVAL`` in the shell cannot change a test's outcome;
- ``dback``: a ``dback_core.testing.Launcher`` on that environment. ``await
  dback.start("dback-mine", environ={"DBACK_MINE_URL": ...})`` starts a server with exactly
  the named installed plugins (none of the others installed beside them) on 127.0.0.1 and a
  free port, and returns a ``dback_core.testing.Served``: its address, its plugins as
  ``dback plugins --json`` shows them, and the ``PluginHost`` the plugin was given - never
  the server object. ``await dback.client(server)`` connects a protocol client. Both are
  closed after the test.

The test functions are ``async def``: mark them ``@pytest.mark.asyncio`` or set pytest-asyncio's
``asyncio_mode = "auto"``. Imports of the server happen in the fixtures, not when pytest loads
this module, so projects that merely have dback-core installed pay nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dback_core.testing import Launcher

#: What the fixtures leave out of the environment; ``dback_core.testing.PREFIX`` too.
_PREFIX = "DBACK_"


@pytest.fixture
def dback_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[MutableMapping[str, str]]:
    """``os.environ`` without any ``DBACK_*`` variable for the test; restored afterwards."""
    for name in [name for name in os.environ if name.startswith(_PREFIX)]:
        monkeypatch.delenv(name)
    yield os.environ


try:
    import pytest_asyncio
except ImportError:  # dback-core installed without its ``testing`` extra

    @pytest.fixture(name="dback")
    def _dback_needs_pytest_asyncio() -> None:
        """Says what is missing instead of failing obscurely."""
        pytest.fail("the dback fixture needs pytest-asyncio: pip install 'dback-core[testing]'")

else:

    @pytest_asyncio.fixture(name="dback")
    async def _dback(
        dback_environ: MutableMapping[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[Launcher]:
        """Starts servers with exactly the plugins a test names; stops them after it."""
        from dback_core.testing import Launcher

        launcher = Launcher(monkeypatch.setenv)
        try:
            yield launcher
        finally:
            await launcher.close()
