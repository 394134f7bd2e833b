"""What every test tier shares: waiting, ports, metrics, object builders, certificates, the cluster.

Tiers import from here and never from each other's conftest or test modules; each conftest.py only
declares fixtures.
"""
