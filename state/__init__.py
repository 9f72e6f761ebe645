"""The state machine of the chain: key layouts, records, the key-value store interface with an
in-memory implementation, overlays for non-final blocks, and the state transition with the
community-asset rules contract run over the state (rules.py) and its governance (governance.py).

Pure by contract: nothing here imports plyvel, fastapi, httpx or asyncio, or reads the clock or
randomness (tests/test_layering.py checks it). The LevelDB store lives in node/, behind `KVStore`.
"""
