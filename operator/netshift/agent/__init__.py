"""The egress redirect agent (`netshift agent`): the data path of one EgressRouter pod.

config (reads the config file; `egressrouter.spec` parses it), ruleset (pure nftables rendering),
routes (pyroute2 edge), nft (nft tool edge), runner (the process). See docs/agent.md.
"""
