"""What the core's tests share: helpers imported as ``tests.support.<module>``, not tests.

Bare ``pytest`` finds them through ``pythonpath = ["."]`` in pyproject.toml, as
``python -m pytest`` does through the working directory.
"""
