"""Make ``import spead2`` resolve to spead2gpu (test helper, not installed).

Put this directory on ``PYTHONPATH`` and Python runs it at start-up (as
``sitecustomize``). It installs a meta-path finder under which

- ``spead2`` is the ``spead2gpu`` module object, and ``spead2.X`` (``recv``,
  ``send``, ``recv.asyncio``, ``send.asyncio``, ``numba``, ``recv.numba``, …)
  is ``spead2gpu.X``;
- ``spead2.tools`` and its submodules are loaded from the installed spead2
  package, so spead2's own command-line tools (``spead2_recv.py``,
  ``spead2_send.py``, ``spead2_bench.py``) run unchanged against spead2gpu.
  Nothing else of the real spead2 is imported (in particular not its
  extension module).

When ``spead2`` is first resolved, one line goes to stderr::

    spead2-alias: spead2 -> spead2gpu <path of spead2gpu/__init__.py>

so that a test can check that the tool really ran on spead2gpu.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_ALIAS = "spead2"
_TARGET = "spead2gpu"
_TOOLS = _ALIAS + ".tools"
#: Marker written to stderr when the alias takes effect.
MARKER = "spead2-alias:"


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already-imported spead2gpu module under a spead2 name."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        if spec.name == _ALIAS:
            sys.stderr.write(f"{MARKER} {_ALIAS} -> {_TARGET} {module.__file__}\n")
            sys.stderr.flush()
        return module

    def exec_module(self, module):
        pass  # already executed as spead2gpu.*


class _AliasFinder(importlib.abc.MetaPathFinder):
    def _real_spead2_path(self):
        # Locate (without importing) the installed spead2 package.
        spec = importlib.machinery.PathFinder.find_spec(_ALIAS)
        if spec is None or not spec.submodule_search_locations:
            return None
        return list(spec.submodule_search_locations)

    def find_spec(self, fullname, path=None, target=None):
        if fullname == _TOOLS:
            real = self._real_spead2_path()
            if real is None:
                return None
            return importlib.machinery.PathFinder.find_spec(fullname, real)
        if fullname.startswith(_TOOLS + "."):
            return None  # found in spead2.tools.__path__ by the normal finders
        if fullname != _ALIAS and not fullname.startswith(_ALIAS + "."):
            return None
        target_name = _TARGET + fullname[len(_ALIAS):]
        existing = sys.modules.get(target_name)
        if existing is not None:
            # Already imported (possibly registered without a spec, such as
            # spead2gpu.recv.stream_stat_indices).
            return importlib.util.spec_from_loader(
                fullname, _AliasLoader(target_name), is_package=hasattr(existing, "__path__")
            )
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            return None
        return importlib.util.spec_from_loader(
            fullname,
            _AliasLoader(target_name),
            is_package=target_spec.submodule_search_locations is not None,
        )


def _chain_next_sitecustomize():
    """Run a sitecustomize that this one shadows, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


sys.meta_path.insert(0, _AliasFinder())
_chain_next_sitecustomize()
