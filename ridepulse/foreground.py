"""The foreground wait of `ridepulse cluster up`: print the URL a caller waits for, then hold
until a stop signal. (`ridepulse redis` supervises its server instead: launcher.run_server_only.)"""

from __future__ import annotations

import signal
from collections.abc import Callable, Set

import typer


def print_url_until_stopped(
    url: str,
    stop_signals: Set[signal.Signals],
    tick: Callable[[], object] | None = None,
    tick_s: float = 0.2,
) -> None:
    """Print `url` and return at the first of `stop_signals`; the caller stops its server.
    Until then `tick()` runs every `tick_s` (`cluster up` restarts dead nodes in it).

    The signals are blocked (sigwait needs them blocked) before the URL is out: whoever reads
    it may stop us at once, and a SIGTERM before the mask killed the command by default with
    its server still running (seen on a slow machine)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    typer.echo(url, color=False)
    if tick is None:
        signal.sigwait(stop_signals)
        return
    while signal.sigtimedwait(stop_signals, tick_s) is None:
        tick()
