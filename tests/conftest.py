"""Shared test settings: hypothesis profiles (CI runs the same examples count as a person)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("tickbus", max_examples=300, deadline=None)
settings.load_profile("tickbus")
