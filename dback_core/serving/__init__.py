"""Serving: the server's lifecycle and event pipeline, WebSocket sessions,
admission, the periodic reload, HTTP routes, metrics, the status page and the ``PluginHost``
each plugin is bound to.
"""
