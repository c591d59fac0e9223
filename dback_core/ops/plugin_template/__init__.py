"""The files ``dback new-plugin`` writes, with ``{{placeholders}}``.

Filled in by ``dback_core.ops.scaffold``.
"""
