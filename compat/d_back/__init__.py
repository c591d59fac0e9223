"""d-back's import path and command line, served by dback.

Code written for d-back imports ``d_back`` or ``d_back.server`` and runs on dback unchanged;
``python -m d_back`` and the ``d_back`` command start a server with d-back's flags. This
package is its own distribution, ``dback-compat``, because it takes the ``d_back`` name that
the d-back distribution also installs: the two are alternatives, never installed together.
"""

from d_back.server import WebSocketServer

__version__ = "0.1.0"

__all__ = ["WebSocketServer", "__version__"]
