"""Peer-to-peer: authenticated gossip of txs, blocks and votes between nodes over HTTP, and
catch-up sync of final blocks with their votes.

Every pushed message is an envelope signed by a known node key: a producer in the schedule of the
previous, current or next epoch, or a node listed in `peer_keys`. This package decodes,
authenticates, rate-limits and scores misbehaviour (a peer past the threshold is banned for a
while); it serves catch-up sync in byte-bounded pages under a byte rate per client; it hands every
object to the node service and never touches the chain state itself.
"""
