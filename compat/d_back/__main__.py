"""``python -m d_back``: d-back's way of starting a server."""

from d_back.cli import main

main()
