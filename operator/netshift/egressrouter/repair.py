"""The repair policy for a child whose server-side apply the API server refuses (pure decisions).

Applying with `force` takes back every field another manager changed, and re-adds removed labels,
annotations and deleted children. What force cannot fix is a child whose current state makes the
apply itself invalid (422):
- a list-map key another manager changed: `kubectl edit` turns Service port 8042 into 81, the entry
  keyed (81, TCP) now belongs to kubectl and keeps its name "tcp-8042", and applying (8042, TCP) back
  adds a second "tcp-8042" ("Duplicate value");
- an immutable field that differs from the rendered one (a Deployment's selector or a Service's
  clusterIP on an object a user re-created, a switch to or from a headless Service).
Those children are deleted and re-created. A re-create is only worth it when the rendered object is
valid on its own (a dry-run create says so): otherwise the fault is ours, and deleting would only take
a working child away. One re-create per refusal: if the apply after it fails too, it is reported.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from netshift.egressrouter.render import is_headless

UNPROCESSABLE = 422
CONFLICT = 409


class Repair(enum.Enum):
    REPORT = "report"        # keep the error in Degraded, retry with backoff
    PROBE = "probe"          # ask the API server (dry-run create) whether the rendered child is valid
    RECREATE = "recreate"    # delete the child, wait for it to be gone, apply again


def after_refused_apply(status: int | None, *, exists: bool, recreated_before: bool) -> Repair:
    """What to do after applying a child failed with HTTP `status`.

    `recreated_before`: this child was already re-created since its last successful apply.
    """
    if status == UNPROCESSABLE and exists and not recreated_before:
        return Repair.PROBE
    return Repair.REPORT


def after_probe(status: int | None) -> Repair:
    """The dry-run create of the rendered child answered `status` (None: it succeeded).

    409 AlreadyExists is checked after validation, so it means "valid"; 422 means our rendered
    object is refused on its own, which no re-create can fix.
    """
    return Repair.RECREATE if status in (None, CONFLICT) else Repair.REPORT


def recreate_first(kind: str, observed: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the rendered change itself touches an immutable field (known without asking)."""
    return kind == "Service" and is_headless(observed) != is_headless(desired)
