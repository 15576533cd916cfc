"""Each package has one public face: every name in __all__ imports, and __all__ is sorted."""

from __future__ import annotations

import importlib
import inspect

import pytest


@pytest.mark.parametrize(
    "package",
    ["tickbus", "actors", "broker", "observability", "observability.profiling", "tickbus.collector"],
)
def test_every_public_name_imports_and_all_is_sorted(package):
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{package}.{name} has no docstring"
