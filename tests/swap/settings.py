"""What every swap-test platform sets: no router (its embedder would slow the engine's start-up), and a
minute for in-flight requests to drain."""

SWAP_SETTINGS = ["swap.drain_timeout_s=60", "router.enabled=false"]
