"""Operations: the ``dback`` command line, worker supervision, logging setup, the
choice of event loop and the ``dback new-plugin`` scaffold with its template.
"""
