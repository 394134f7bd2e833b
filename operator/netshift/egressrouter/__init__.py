"""The EgressRouter controller: pure validation, rendering and condition computation, one reconcile.

`spec` (the one spec parser), `render` and `conditions` are pure (unit tested without a cluster); `reconcile`
is the single idempotent pass that talks to the API server; `netshift.operator.egressrouter` wires it to kopf.
"""
