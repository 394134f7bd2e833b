"""The route controller's API calls: ``netshift.kube`` requests, off the event loop.

Requests block, so they run on a small thread pool (the controller's writes are concurrent:
one connection per thread). Events are posted there too, fire and forget.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from netshift.kube import Kube, new_api_client
from netshift.models.route import ADMITTED, KIND

from . import admission
from .controller import Observed

P = ParamSpec("P")
T = TypeVar("T")


class KubeRouteApi:
    def __init__(self, threads: int = 16) -> None:
        self.kube = Kube(new_api_client("operator", pool_size=threads), controller="route")
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="route-api")

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._run(self.kube.merge_patch, KIND, namespace, name, patch, sub="status")

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._run(self.kube.merge_patch, KIND, namespace, name, patch)

    def post_transition(self, obs: Observed, decision: admission.Decision,
                        previous: admission.Decision | None) -> None:
        """An Event on the route for each transition; a first admission is not news."""
        if decision.admitted and previous is None:
            return
        ref = {"metadata": {"name": obs.name, "namespace": obs.namespace}}
        if decision.admitted:
            self._pool.submit(self.kube.post_event, KIND, ref, reason=ADMITTED, message="route admitted",
                              warning=False)
        else:
            self._pool.submit(self.kube.post_event, KIND, ref, reason=decision.reason or "Rejected",
                              message=decision.message or "", warning=True)


def scopes(patterns: list[str]) -> list[str | None]:
    """What to list and watch for kopf's namespace patterns: each namespace when they are all exact
    names, else all namespaces (filtered with ``watched``)."""
    exact = [n for n in patterns if not any(ch in n for ch in "*?[!")]
    return [*exact] if patterns and len(exact) == len(patterns) else [None]


def watched(namespace: str, patterns: list[str]) -> bool:
    """kopf's namespace patterns: globs, and ``!glob`` to exclude."""
    included = [p for p in patterns if not p.startswith("!")]
    excluded = [p[1:] for p in patterns if p.startswith("!")]
    return (not included or any(fnmatch.fnmatchcase(namespace, p) for p in included)) and \
        not any(fnmatch.fnmatchcase(namespace, p) for p in excluded)
