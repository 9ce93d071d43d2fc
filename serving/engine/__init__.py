"""vLLM engines: processes the platform starts (process.py), and the endpoints the gateway balances over (pool.py)."""
