"""The Route data plane: `netshift router` renders an HAProxy configuration from admitted Routes
and their endpoints and runs HAProxy in master-worker mode (see docs/router.md)."""
