"""The plugin-facing surface: the only package a plugin may import from (besides
``dback_core`` itself, which re-exports its most used names).

Hook specifications, the ``PluginHost`` handle, events, settings (the plugins' and the
core's), health, backoff, rate limiting, redaction and every exception type. Nothing here
imports the rest of the core, so what a plugin depends on is all in this folder.
"""
