"""Compatibility package: code written for d-back imports ``d_back.server`` and runs on dback."""
