"""The files ``dback new-plugin`` writes, with ``{{placeholders}}`` (``dback_core.scaffold``)."""
