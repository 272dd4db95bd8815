"""The SLO gate of a headless run: the quitting hook sets locust's exit code.

It judges the whole run, stop drain and stuck-ride check included, however the run ends: after
-t, locust stops the users before quitting; on Ctrl-C or SIGTERM it fires quitting first, so the
gate stops the users itself before judging. A distributed master waits for every worker's final
report (final_reports.py) and judges the merged stats.

Pass needs all four: no exception raised in the simulation's own code (locust catches it, logs it
and carries on, so the run would measure less than it says); a failure ratio of API calls (HTTP
and WS, not the RIDE metrics) at most RIDEPULSE_SLO_FAIL_RATIO; a p95 of HTTP calls *of the load
phase* at most RIDEPULSE_SLO_P95_MS; and every ride the simulated riders created in a terminal
state. Rides are checked when the test stops, after every user's on_stop has cancelled or finished
its ride; each ride still open after a short grace is recorded as a failed "RIDE stuck_ride" sample
naming it, so the check also reaches the master of a distributed run through the ordinary stats
stream.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
from locust import events
from locust import log as locust_log
from locust.env import Environment
from locust.event import EventHook
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner
from locust.stats import RequestStats, StatsEntry

from loadtests.behaviours.ledger import TERMINAL_STATUSES
from loadtests.behaviours.slo import SloLimits, breaches, describe_exception
from loadtests.final_files import write_final_csv, write_final_html
from loadtests.final_reports import FinalReports
from loadtests.runtime import runtime, sim_config
from loadtests.users.samples import fire_sample
from ridepulse.auth import mint_token

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
CUSTOM_TYPE = "RIDE"
STUCK_NAME = "stuck_ride"
READ_TIMEOUT_S = 5.0
RECHECK_EVERY_S = 0.5
# beyond locust's --stop-timeout and the ride grace: a worker's drain of its users' last calls
FINAL_REPORT_MARGIN_S = 60.0

# The HTTP samples as they stood when the run stopped, before the users' on_stop drain. Locust
# stops every user in the same instant, so the drain is a burst of a few hundred calls that no
# real traffic makes (every driver signs off and every rider cancels at once); it is judged by the
# failure ratio and the stuck-ride check, and its latency is reported, not gated.
_load_phase: list[StatsEntry] = []
_final_reports = FinalReports()
_missing_reports: list[str] = []  # workers whose final report never came (master)


def api_entry(stats: RequestStats, methods: frozenset[str] | None = None) -> StatsEntry:
    """All API samples merged into one entry (`methods` None = every type but the RIDE metrics)."""
    merged = StatsEntry(stats, "API", "", use_response_times_cache=False)
    for (_, method), entry in stats.entries.items():
        if (method in methods) if methods is not None else method != CUSTOM_TYPE:
            merged.extend(entry)
    return merged


def ride_status(host: str, ride_id: str, token: str) -> str | None:
    request = urllib.request.Request(
        f"{host.rstrip('/')}/v1/rides/{ride_id}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
            body: Any = orjson.loads(response.read())
    except (OSError, urllib.error.URLError, orjson.JSONDecodeError):
        return None
    status = body.get("status") if isinstance(body, dict) else None
    return status if isinstance(status, str) else None


def stuck_rides(host: str) -> dict[str, str | None]:
    """Open rides still not terminal after the grace period, with their last seen status.

    Gives up at once when no ride can be read at all (the API is down): waiting cannot help.
    """
    rt = runtime()
    pending: dict[str, str | None] = dict.fromkeys(rt.ledger.open_ride_ids())
    if not pending:
        return {}
    token = mint_token(rt.secret, "ops", "slo-gate")
    deadline = time.monotonic() + rt.config.slo_grace_s
    while True:
        for ride_id in list(pending):
            pending[ride_id] = ride_status(host, ride_id, token)
            if pending[ride_id] in TERMINAL_STATUSES:
                del pending[ride_id]
                rt.ledger.closed(ride_id)
        unreachable = all(status is None for status in pending.values())
        if not pending or unreachable or time.monotonic() >= deadline:
            return pending
        time.sleep(RECHECK_EVERY_S)


def crashes(environment: Environment) -> list[str]:
    """Exceptions locust caught in users (a worker's reach the master too), and whether locust
    logged one from a greenlet or an event handler, which would otherwise have made its exit code 2.
    """
    runner = environment.runner
    found = [
        describe_exception(row["msg"], row["traceback"], row["count"])
        for row in (runner.exceptions.values() if runner is not None else ())
    ]
    if locust_log.unhandled_greenlet_exception:
        found.append("an unhandled exception in locust or an event handler (see the log)")
    return found


def _on_init(environment: Environment, **_: Any) -> None:
    """Fail at start-up, once, on a bad knob or a missing secret, not in every user's on_start."""
    if not isinstance(environment.runner, MasterRunner):
        try:
            runtime()
        except (ValueError, RuntimeError) as exc:  # no secret, an unknown market: say which
            sys.exit(f"error: {exc}")  # SystemExit passes locust's handler: no traceback


def _on_test_start(environment: Environment, **_: Any) -> None:
    _final_reports.reset()
    _missing_reports.clear()
    if not isinstance(environment.runner, MasterRunner):
        runtime().ledger.reset()


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    if environment.runner is not None and not isinstance(environment.runner, WorkerRunner):
        _load_phase[:] = [api_entry(environment.runner.stats, HTTP_METHODS)]


def _on_test_stop(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        if _headless(environment):
            timeout_s = environment.stop_timeout + sim_config().slo_grace_s + FINAL_REPORT_MARGIN_S
            _missing_reports[:] = _final_reports.await_workers(runner, timeout_s)
        return
    if sim_config().slo_check_rides:
        for ride_id, status in sorted(stuck_rides(environment.host or "").items()):
            fire_sample(
                environment,
                CUSTOM_TYPE,
                STUCK_NAME,
                0,
                exception=f"{ride_id} left in state {status or 'unknown'}",
            )
    _final_reports.drained = True  # a worker's next report carries all of it


def _headless(environment: Environment) -> bool:
    return bool(getattr(environment.parsed_options, "headless", False))


def _on_quitting(environment: Environment, **_: Any) -> None:
    if environment.runner is None or environment.parsed_options is None:
        return
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the whole run from the stats every worker sent
    if not _headless(environment):
        return  # an interactive run is judged by its operator
    if environment.runner.state in (STATE_SPAWNING, STATE_RUNNING):
        # Ctrl-C or SIGTERM: locust fires quitting before it stops the users, so stop them here:
        # their drain and the stuck-ride check (test_stop) belong in the verdict
        environment.runner.stop()
    _judge(environment)
    options = environment.parsed_options
    if getattr(options, "csv_prefix", None):
        write_final_csv(environment, options.csv_prefix)
    if getattr(options, "html_file", None):
        write_final_html(environment, options)


def _judge(environment: Environment) -> None:
    assert environment.runner is not None
    config = sim_config()
    stats = environment.runner.stats
    everything, http = api_entry(stats), api_entry(stats, HTTP_METHODS)
    load = _load_phase[0] if _load_phase else http
    p95_ms = load.get_response_time_percentile(0.95) if load.num_requests else 0
    overall_p95_ms = http.get_response_time_percentile(0.95) if http.num_requests else 0
    stuck = sorted(
        str(e.error).split(" ", 1)[0]
        for e in stats.errors.values()
        if e.method == CUSTOM_TYPE and e.name == STUCK_NAME
    )
    reasons = breaches(
        fail_ratio=everything.fail_ratio,
        p95_ms=p95_ms,
        requests=everything.num_requests,
        stuck_ride_ids=stuck,
        limits=SloLimits(max_fail_ratio=config.slo_fail_ratio, max_p95_ms=config.slo_p95_ms),
        exceptions=crashes(environment),
    )
    if _missing_reports:
        reasons.append(
            f"no final report from worker(s) {', '.join(_missing_reports)}: their stop drain and "
            "stuck-ride check are not in these figures"
        )
    if reasons:
        print("SLO gate: FAIL\n  - " + "\n  - ".join(reasons), flush=True)
        environment.process_exit_code = 1
    else:
        local = (
            ""
            if isinstance(environment.runner, MasterRunner)
            else f", {runtime().ledger.created} rides"
        )
        rides = (
            "no ride left open"
            if config.slo_check_rides
            else "open rides not checked (RIDEPULSE_SLO_CHECK_RIDES=0)"
        )
        print(
            f"SLO gate: pass ({everything.num_requests} API calls, failure ratio "
            f"{everything.fail_ratio:.2%}, HTTP p95 {p95_ms} ms under load and {overall_p95_ms} ms"
            f" with the stop drain{local}, {rides})",
            flush=True,
        )
        environment.process_exit_code = 0


def _listen(hook: EventHook, listener: Callable[..., None]) -> None:
    add: Callable[[Callable[..., None]], object] = hook.add_listener  # locust's hook is untyped
    add(listener)


def register() -> None:
    """Attach the gate to locust's events; the locustfile calls this once."""
    _listen(events.init, _on_init)
    _listen(events.test_start, _on_test_start)
    _listen(events.test_stopping, _on_test_stopping)
    _listen(events.test_stop, _on_test_stop)
    _listen(events.quitting, _on_quitting)
    _listen(events.report_to_master, _final_reports.on_report_to_master)
    _listen(events.worker_report, _final_reports.on_worker_report)
