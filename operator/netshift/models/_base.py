"""Common base for the typed API models.

Rules shared by every model of this package:

* frozen (derive new values with ``model_copy(update=...)``);
* Python attribute names are snake_case, the wire names are the Kubernetes camelCase ones
  (``populate_by_name=True``: both are accepted on input);
* unknown fields are kept (``extra="allow"``) so that nothing is lost on a round trip;
* optional fields default to ``None`` and the schema defaults (weight 100, mode Bridge...) are
  *not* filled in by the models: the CRD applies them server-side, so every object read from the
  API server carries them, and ``model_dump(by_alias=True, exclude_none=True)`` gives back exactly
  the dict that was parsed. Helpers named ``effective_*`` return the value with the schema default
  applied, for code that handles objects that did not come from the API server;
* the models never validate more than the CRD does: enumerations are plain ``str`` (constants
  live in small ``StrEnum`` classes for comparisons), times are the RFC 3339 strings of the wire.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel

__all__ = ["ApiModel", "KubeObject", "ObjectMeta", "OwnerReference", "rfc3339_now"]


class ApiModel(BaseModel):
    """Base of every model: frozen, camelCase aliases, unknown fields kept."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow", alias_generator=to_camel)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, ``None`` fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class OwnerReference(ApiModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(ApiModel):
    """The parts of ``metadata`` the operator reads; everything else is kept as extra fields."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None


class KubeObject(ApiModel):
    """A whole Kubernetes object: ``apiVersion``, ``kind``, ``metadata``."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_serializer(mode="wrap")
    def _drop_absent_metadata(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `metadata` always exists for attribute access, but is only written back when it was given
        # (so that a parsed dict serialises back to exactly itself).
        data: dict[str, Any] = handler(self)
        if "metadata" not in self.model_fields_set and not data.get("metadata"):
            data.pop("metadata", None)
        return data

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Self:
        """Parse a whole object as returned by the API server (or written by a user)."""
        return cls.model_validate(obj)

    def to_obj(self) -> dict[str, Any]:
        """The object as a plain dict for the API server (camelCase, no ``None`` fields)."""
        return self.to_dict()

    @property
    def name(self) -> str | None:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


def rfc3339_now() -> str:
    """Now, in the form Kubernetes uses for ``metav1.Time`` (UTC, seconds, ``Z``)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
