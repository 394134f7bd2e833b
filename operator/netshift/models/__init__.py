"""Typed (pydantic v2) models of the two APIs netshift serves.

``Route`` (route.openshift.io/v1) and ``EgressRouter`` (network.operator.openshift.io/v1): frozen,
snake_case attributes with camelCase aliases, unknown fields kept, ``from_obj(dict)`` / ``to_obj()``
round-trip without loss. The CRDs in ``crds/`` are the validators; the models only give typed access.
"""
from . import egressrouter, route
from ._base import ApiModel, KubeObject, ObjectMeta, OwnerReference, rfc3339_now
from .egressrouter import (
    EgressRouter,
    EgressRouterAddress,
    EgressRouterInterface,
    EgressRouterSpec,
    EgressRouterStatus,
    EgressRouterStatusCondition,
    L4RedirectRule,
    MacvlanConfig,
    RedirectConfig,
)
from .route import (
    LocalObjectReference,
    Route,
    RouteHTTPHeader,
    RouteHTTPHeaderActions,
    RouteHTTPHeaderActionUnion,
    RouteHTTPHeaders,
    RouteIngress,
    RouteIngressCondition,
    RoutePort,
    RouteSetHTTPHeader,
    RouteSpec,
    RouteStatus,
    RouteTargetReference,
    TLSConfig,
)

__all__ = [
    "ApiModel",
    "EgressRouter",
    "EgressRouterAddress",
    "EgressRouterInterface",
    "EgressRouterSpec",
    "EgressRouterStatus",
    "EgressRouterStatusCondition",
    "KubeObject",
    "L4RedirectRule",
    "LocalObjectReference",
    "MacvlanConfig",
    "ObjectMeta",
    "OwnerReference",
    "RedirectConfig",
    "Route",
    "RouteHTTPHeader",
    "RouteHTTPHeaderActionUnion",
    "RouteHTTPHeaderActions",
    "RouteHTTPHeaders",
    "RouteIngress",
    "RouteIngressCondition",
    "RoutePort",
    "RouteSetHTTPHeader",
    "RouteSpec",
    "RouteStatus",
    "RouteTargetReference",
    "TLSConfig",
    "egressrouter",
    "rfc3339_now",
    "route",
]
