"""Consensus: the producer schedule, the block tree with its fork choice, and vote-based finality
(the Streamlet rule: three notarized blocks in consecutive slots finalize the middle one).

The engine takes blocks, votes and the current time as inputs and returns what to broadcast and
what became final; it never sleeps, reads the clock or touches the network itself, so it runs the
same under a real node and under a seeded in-process simulation.
"""
