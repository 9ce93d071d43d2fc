"""Typed config sections for serving. The platform's config module fills them; serving never reads files."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EngineConfig(BaseModel):
    """How the platform starts and supervises vLLM OpenAI servers."""

    host: str = Field(
        "127.0.0.1", description="Engines bind loopback only: vLLM's admin routes are unauthenticated."
    )
    base_port: int = Field(
        0,
        description="First port tried for a managed engine (the next free one is used); 0: the OS picks one.",
    )
    python: str = Field("", description="Interpreter that runs vLLM (empty: the platform's own).")
    dtype: str = Field(
        "float32", description="vLLM --dtype. float32 is the safe CPU default (AVX2-only hosts)."
    )
    max_model_len: int = Field(2048, description="vLLM --max-model-len.")
    enforce_eager: bool = Field(True, description="Skip torch.compile: ~25 s start instead of ~2 min on CPU.")
    kvcache_gib: int = Field(
        2, ge=1, description="VLLM_CPU_KVCACHE_SPACE (GiB, whole number) on CPU engines."
    )
    gpu_memory_utilization: float = Field(0.85, description="vLLM --gpu-memory-utilization on GPU engines.")
    extra_args: list[str] = Field(default_factory=list, description="Extra vLLM server arguments.")
    extra_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for engine processes."
    )
    startup_timeout_s: float = Field(600.0, description="Give up on an engine that is not healthy by then.")
    restart_on_crash: bool = Field(True, description="Restart a managed engine that exits unexpectedly.")
    max_restarts: int = Field(5, description="Stop restarting after this many crashes in a row.")
    external_urls: list[str] = Field(
        default_factory=list,
        description="Already-running engines (vLLM replicas). When set, no engine is started locally.",
    )
    replicas: int = Field(1, description="Managed engines per version (each on its own port).")


class GatewayConfig(BaseModel):
    """The OpenAI-compatible front door."""

    host: str = Field("127.0.0.1", description="Address the platform listens on.")
    port: int = Field(8000, description="Port the platform listens on.")
    max_body_bytes: int = Field(1_048_576, description="Requests with a larger body get 413.")
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body not complete after this long gets 408 (a client closing mid-body: 499).",
    )
    request_timeout_s: float = Field(600.0, description="Upper bound for one upstream engine call.")
    keep_alive_s: float = Field(
        75.0,
        gt=0,
        description="Idle client connections are closed after this long. Kept above clients' own idle expiry "
        "(httpx and the OpenAI SDK: 5 s) so the client always closes first: with uvicorn's 5 s default both "
        "ends closed at the same moment, and a request sent on a connection the server was just closing "
        "failed without a response.",
    )
    served_model_name: str = Field("keel", description="Model id clients use; stable across swaps.")


class SwapConfig(BaseModel):
    start_timeout_s: float = Field(
        300.0, description="Blue/green: a new engine not healthy by then is retried once on a fresh port."
    )
    drain_timeout_s: float = Field(
        120.0, description="Longest wait for in-flight requests (streams too) on the old weights."
    )
    warmup_timeout_s: float = Field(
        120.0, description="Longest wait for the warm-up completion on new weights."
    )
    verify: bool = Field(
        True,
        description="After every reload and engine start, the engine must answer the checkpoint's probe "
        "fingerprint (greedy tokens + log-probabilities) before it serves; a mismatch refuses the swap.",
    )
    verify_tolerance: float = Field(
        0.02,
        gt=0,
        description="Largest allowed log-probability difference per probe token (vLLM CPU fp32 vs the "
        "transformers reference: ~3e-5 measured; weights scaled by 1.01: 0.16).",
    )
