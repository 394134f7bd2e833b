"""Load only the parts of the `kubernetes` package that netshift uses, for a long-running process.

netshift sends raw JSON through ``ApiClient.call_api`` and needs the client's Configuration, the
config loaders and the watch's line iterator. But ``import kubernetes`` imports every API class and
every model of the generated client: about 27 MiB of code objects, a sixth of the operator's memory
target. ``load()`` registers empty package modules for ``kubernetes``, ``kubernetes.client`` and
``kubernetes.client.models``, so that the submodules load without those packages' ``__init__``, and
exposes the names the config loaders (and kopf's ``login_via_client``) import from them.

It lives outside `netshift.kube`, whose package imports `kubernetes`. Call it first in a process that
uses nothing else of `kubernetes` (the operator, see `netshift.operator.cli`): afterwards
``kubernetes.client`` has no CoreV1Api and no models, and kopf, which only uses those models to accept
them as bodies (netshift never passes any), sees none. After an import of `kubernetes` it does nothing.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.models")


def load() -> None:
    if "kubernetes" in sys.modules:  # slim already, or the whole package (a test calling the CLI)
        return
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations is not None, name
        module = types.ModuleType(name)
        module.__spec__, module.__path__ = spec, list(spec.submodule_search_locations)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    client = sys.modules["kubernetes.client"]
    configuration = importlib.import_module("kubernetes.client.configuration")
    api_client = importlib.import_module("kubernetes.client.api_client")
    client.Configuration = configuration.Configuration  # type: ignore[attr-defined]  # what the config loaders import
    client.ApiClient = api_client.ApiClient  # type: ignore[attr-defined]
    client.rest = importlib.import_module("kubernetes.client.rest")  # type: ignore[attr-defined]
    sys.modules["kubernetes"].config = importlib.import_module("kubernetes.config")  # type: ignore[attr-defined]
