"""Process wiring of a validator or full node: config, the LevelDB store, the chain (block tree
over the committed state), the mempool, the HTTP API and the asyncio service that runs them."""
