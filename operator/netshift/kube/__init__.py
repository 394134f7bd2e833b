"""The one Kubernetes access layer: client construction, requests, list-watch and Events.

Every controller and the router talk to the API server through ``Kube`` (raw JSON on the
``kubernetes`` client's ApiClient), so the request counting, error classification, field manager
and Event format exist once.
"""
from .api import ApiError, Kube, error_message
from .client import new_api_client

__all__ = ["ApiError", "Kube", "error_message", "new_api_client"]
