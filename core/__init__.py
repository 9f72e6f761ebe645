"""Shared wire objects of the chain: canonical msgpack codec, keys and signatures, transactions,
blocks, votes and tickets, typed errors, and chain parameters from genesis.

Everything here is pure (no I/O, no clock): node/, consensus/, state/, p2p/, the wallet client and
the tests all import these definitions, so each wire object has exactly one encoding.
"""
