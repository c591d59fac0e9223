"""dback-mock: four simulated guilds whose members change status and chat.

The embedded default of dback: it makes a fresh install show a living world, and it steps
aside as soon as a real provider plugin is installed beside it (unless it is named in
``DBACK_PLUGINS``).
"""
