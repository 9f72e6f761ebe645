"""Peer-to-peer: authenticated gossip of txs, blocks and votes between nodes over HTTP, and
catch-up sync of final blocks with their votes.

Every pushed message is an envelope signed by a known node key (a registered producer's, or a
full node listed in `peer_keys`). This package decodes, authenticates, rate-limits and penalizes;
it hands every object to the node service and never touches the chain state itself.
"""
