"""``ltc sandbox start|stop|status``: the local emulators, in a background process."""

from __future__ import annotations

import typer
from rich.console import Console

from canonical.errors import ConfigError
from ltc.app import emulators

app = typer.Typer(help="Local emulators of the vendor APIs (for demos, tests and trying mappings).",
                  no_args_is_help=True)
console = Console()


@app.command("start")
def start(
    kind: list[str] = typer.Option(None, "--kind", "-k", help="Emulators to start (default: all)."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
    size: int = typer.Option(200, help="Records per object."),
    world: str | None = typer.Option(None, "--world", help="Serve this world directory (docs/world.md) "
                                     "instead of generated data: one emulator per system it holds."),
    write_config: str | None = typer.Option(None, "--write-config", help="With --world: write an ltc.yaml "
                                            "here pointing at the emulators (every source, the bank folder, "
                                            "the FX file, the emulators' credentials) that `ltc run` uses as it is."),
) -> None:
    """Start the emulators on free 127.0.0.1 ports and print their URLs."""
    if write_config and not world:
        raise ConfigError("--write-config needs --world: only a world's sandbox has one configuration to write")
    emulators.start(kind or [], seed, size, world)
    status()
    if write_config:
        try:
            path = emulators.write_config(write_config)
        except Exception:
            emulators.stop()  # nothing half-done stays running
            raise
        console.print(f"wrote {path}: `ltc config check --config {path}`, then `ltc run --config {path}`",
                      highlight=False)


@app.command("status")
def status() -> None:
    """Print the running emulators."""
    state = emulators.read_state()
    if state is None:
        console.print("sandbox: not running")
        return
    world = state.get("world")
    if world:
        console.print(f"world {world['name']} ({world['path']})", highlight=False)
    for k, e in state["emulators"].items():
        console.print(f"{k:<12} {e['url']}" + (f"  (CA: {e['ca_file']})" if e.get("ca_file") else ""), highlight=False)
    if world and world.get("bank_folder"):
        console.print(f"{'bank':<12} {world['bank_folder']}  (import: `ltc import-statement --folder DIR`)", highlight=False)
    console.print(f"pid {state['pid']}; stop with `ltc sandbox stop`")


@app.command("stop")
def stop() -> None:
    """Stop the emulators."""
    console.print("sandbox stopped" if emulators.stop() else "sandbox: not running")
