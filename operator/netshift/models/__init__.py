"""Typed (pydantic v2) models of the two APIs netshift serves.

``Route`` (route.openshift.io/v1) and ``EgressRouter`` (network.operator.openshift.io/v1): frozen,
snake_case attributes with camelCase aliases, unknown fields kept, ``from_obj(dict)`` / ``to_obj()``
round-trip without loss. The CRDs in ``crds/`` are the validators; the models only give typed access.
"""
from . import egressrouter, route
from ._base import ObjectMeta, rfc3339_now
from .egressrouter import EgressRouter
from .route import Route

__all__ = ["EgressRouter", "ObjectMeta", "Route", "egressrouter", "rfc3339_now", "route"]
