"""The state machine of the chain: key layouts, records, the key-value store interface with an
in-memory implementation, overlays for non-final blocks, and the state transition.

Pure by contract: nothing here imports plyvel, fastapi, httpx or asyncio, or reads the clock or
randomness (tests/test_layering.py checks it). The LevelDB store lives in node/, behind `KVStore`.
"""
