"""`keel up` (the platform process) and `keel model prepare`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from keel.cli import app, fail, load

if TYPE_CHECKING:
    from keel.config import KeelSettings


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Listen address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config).")] = None,
) -> None:
    """Start the platform: engines, gateway, request log. Ctrl-C or SIGTERM stops everything cleanly."""
    import asyncio
    import logging

    settings = load()
    if host:
        settings.gateway.host = host
    if port:
        settings.gateway.port = port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    code = asyncio.run(_serve(settings))
    raise typer.Exit(code)


async def _serve(settings: KeelSettings) -> int:
    import uvicorn

    from keel.app import build_platform, create_app
    from keel.checkpoints.basemodel import ModelError
    from serving.engine.process import EngineStartError, port_is_free

    if not port_is_free(settings.gateway.host, settings.gateway.port):
        typer.echo(f"error: port {settings.gateway.port} is already in use", err=True)
        return 1
    try:
        platform = build_platform(settings)
    except RuntimeError as e:
        typer.echo(f"error: {e}", err=True)
        return 1
    typer.echo(
        f"keel: starting engine(s) for {settings.model.path or 'the embedded SmolLM2-135M-Instruct'} ...",
        err=True,
    )
    try:
        await platform.start()
    except (EngineStartError, ModelError) as e:
        await platform.stop()
        typer.echo(f"error: engine failed to start: {e}", err=True)
        return 1
    except BaseException:
        await platform.stop()
        raise
    url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    typer.echo(
        f"keel: serving {platform.pool.version} as '{settings.gateway.served_model_name}' at {url}/v1",
        err=True,
    )
    config = uvicorn.Config(
        create_app(platform),
        host=settings.gateway.host,
        port=settings.gateway.port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=settings.gateway.keep_alive_s,
        timeout_graceful_shutdown=60,
    )
    await _graceful_server_class()(config).serve()
    return 0


def _graceful_server_class():
    import asyncio
    import contextlib
    import signal

    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after shutdown (exit status -15); a clean stop should exit 0."""

        @contextlib.contextmanager
        def capture_signals(self):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return GracefulServer


model_app = typer.Typer(no_args_is_help=True)
app.add_typer(model_app, name="model", help="The base model.")


@model_app.command("prepare")
def prepare() -> None:
    """Convert the embedded model (or check the configured folder) and print the folder that `base` serves."""
    from keel.checkpoints.basemodel import ModelError, ensure_base

    settings = load()
    try:
        path = ensure_base(settings.checkpoints_dir, settings.model.path)
    except ModelError as e:
        raise fail(str(e)) from e
    typer.echo(str(path))
