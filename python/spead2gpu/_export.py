"""Re-exporting the compiled module's names into the Python packages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any


def export_compiled(namespace: dict[str, Any], module: ModuleType, names: Iterable[str],
                    also: Callable[[str], bool] = lambda name: False) -> None:
    """Copy into *namespace* the attributes of *module* listed in *names* that
    exist, then every other public attribute for which *also* is true (names
    already in *namespace* are kept)."""
    for name in names:
        if hasattr(module, name):
            namespace[name] = getattr(module, name)
    for name in dir(module):
        if not name.startswith("_") and name not in namespace and also(name):
            namespace[name] = getattr(module, name)
