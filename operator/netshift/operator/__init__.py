"""The operator process (`netshift operator`): `cli` (flags and settings), `app` (kopf settings, the
handler registry, the run), and the kopf wiring of each kind (`egressrouter`, `route`)."""
