"""The wire: the d-zone protocol's frames, shared deflate, the fan-out to viewers,
accepted connections and their limits, plain HTTP answers, static files and input cleaning.

Knows sockets and bytes, never plugins or guilds' owners.
"""
