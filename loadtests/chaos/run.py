"""One chaos run: start the platform, load it, kill its processes, drain, then judge.

    python -m loadtests.chaos [--duration-s 600] [--seed 9] [--no-valkey-kill] ...

Timeline: `ridepulse up --no-sim` (shared launcher) → drivers online → riders at `rate` per
second for `duration_s` while a random service is SIGKILLed every `kill_every_s` (jittered)
and, once at half time, the Valkey server → riders stop, drivers finish (drain) → checks from
the API and the ride stream, and the supervisor's log against the monkey's kills (the Valkey
kill happened and no service died of it) → `ridepulse status` must be healthy within 30 s →
report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

from loadtests.chaos.checks import RideEvent, Verdict, judge, longest_gap
from loadtests.chaos.city import Api, Driver, Ledger, prober, riders
from loadtests.chaos.deaths import (
    VALKEY,
    Fault,
    only_the_monkeys_kills_verdict,
    read_supervisor_log,
    ride_out_verdict,
    valkey_kill_verdict,
)
from loadtests.platform import Platform, clean_env, tool
from ridepulse.keys import MarketKeys
from ridepulse.redis_client import connect_sync

MARKET = "sf"
STATUS_WITHIN_S = 30.0
DRAIN_AFTER_DEADLINE_S = 60.0  # an offer timeout and a fault or two past the ride deadline


@dataclass
class Config:
    duration_s: float = 600.0
    seed: int = 9
    drivers: int = 60
    rate_per_s: float = 3.0
    kill_every_s: float = 3.0
    valkey_kill: bool = True
    min_completed: float = 0.95
    # Time to find a driver before a ride expires. Longer than the product's 60 s default so that
    # the completion share measures service lost to faults, not how slow a shared CI machine
    # starts a Python process (a killed ingest is back in well under a second, ready in 1-10 s).
    ride_deadline_s: float = 180.0
    # A driver's time to answer an offer: the chaos drivers poll for offers, and on a loaded
    # machine a poll can take seconds; an offer that times out only wastes a driver's time.
    offer_timeout_s: float = 30.0
    max_outage_s: float | None = None
    report: Path = Path("loadtests/reports/chaos.json")
    keep_data: bool = False


@dataclass
class Monkey:
    platform: Platform
    rng: random.Random
    started: float
    started_epoch: float  # the wall clock at `started`: the supervisor's log is timed in it
    faults: list[Fault] = field(default_factory=list)
    pings: list[asyncio.Task[None]] = field(default_factory=list)

    def kill(self, name: str) -> Fault | None:
        proc = self.platform.processes().get(name)
        if proc is None:
            return None  # it is being restarted right now: no double fault on one service
        try:
            proc.send_signal(signal.SIGKILL)
        except Exception:  # gone between the lookup and the kill
            return None
        fault = Fault(round(time.monotonic() - self.started, 2), name, proc.pid)
        self.faults.append(fault)
        return fault

    async def run(self, cfg: Config, stop: asyncio.Event) -> None:
        valkey_at = cfg.duration_s / 2 if cfg.valkey_kill else None
        while not stop.is_set():
            await _sleep_or_stop(stop, cfg.kill_every_s * self.rng.uniform(0.5, 1.5))
            if stop.is_set():
                return
            now = time.monotonic() - self.started
            if valkey_at is not None and now >= valkey_at:
                fault = self.kill(VALKEY)
                if fault is not None:  # else the next tick tries again; the verdict counts
                    valkey_at = None
                    self.pings.append(asyncio.create_task(self.time_valkey_back(fault)))
                continue
            names = sorted(n for n in self.platform.processes() if n != VALKEY)
            if names:
                self.kill(self.rng.choice(names))

    async def time_valkey_back(self, fault: Fault, timeout_s: float = 60.0) -> None:
        """From the kill until a new server process answers PING (the operator's password)."""
        client = aioredis.Redis.from_url(
            self.platform.redis_url(), socket_timeout=1.0, socket_connect_timeout=1.0
        )
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                proc = self.platform.processes().get(VALKEY)
                if proc is not None and proc.pid != fault.pid:
                    with contextlib.suppress(RedisError, OSError):
                        if await client.ping():
                            now = time.monotonic() - self.started
                            fault.answered_after_s = round(now - fault.at_s, 2)
                            return
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def measure_recovery(self, stop: asyncio.Event) -> None:
        """For every fault, how long until its replacement process was running."""
        stopped_at: float | None = None
        while True:
            running = self.platform.processes()
            now = time.monotonic() - self.started
            for fault in self.faults:
                proc = running.get(fault.target)
                if fault.back_after_s is None and proc is not None and proc.pid != fault.pid:
                    fault.back_after_s = round(now - fault.at_s, 2)
            if stop.is_set():
                stopped_at = stopped_at or now
                if all(f.back_after_s is not None for f in self.faults) or now - stopped_at > 30:
                    return
            await asyncio.sleep(0.1)


async def progress(ledger: Ledger, monkey: Monkey, stop: asyncio.Event) -> None:
    """A line every 30 s, so a CI log shows the run moving."""
    while not stop.is_set():
        await _sleep_or_stop(stop, 30.0)
        elapsed = time.monotonic() - monkey.started
        print(
            f"chaos: {elapsed:4.0f}s  rides acknowledged {len(ledger.acknowledged)}"
            f"  completed by drivers {ledger.completed_by_drivers}  faults {len(monkey.faults)}",
            flush=True,
        )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def read_ride_stream(platform: Platform) -> list[RideEvent]:
    client = connect_sync(platform.redis_url(), socket_timeout=10)
    key = MarketKeys(MARKET, "rp").rides
    events: list[RideEvent] = []
    start = "-"
    try:
        while True:
            batch: list[Any] = client.xrange(key, start, "+", count=5000)  # type: ignore[assignment]
            for raw_id, fields in batch:
                data = orjson.loads(fields.get(b"data", b"{}"))
                kind = fields.get(b"type", b"").decode()
                events.append(RideEvent.from_data(raw_id.decode(), kind, data))
            if len(batch) < 5000:
                return events
            start = "(" + batch[-1][0].decode()
    finally:
        client.close()


async def drain(api: Api, rides: set[str], timeout_s: float) -> dict[str, str]:
    """Wait until every acknowledged ride is terminal (or the timeout); their final status."""
    headers = api.auth("ops", "chaos-checker")
    final: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    open_rides = set(rides)
    while open_rides and time.monotonic() < deadline:
        for ride_id in sorted(open_rides):
            response = await api.call("GET", f"/v1/rides/{ride_id}", headers=headers)
            if response is not None and response.status_code == 200:
                final[ride_id] = response.json()["status"]
                if final[ride_id] in ("completed", "cancelled", "expired"):
                    open_rides.discard(ride_id)
        if open_rides:
            await asyncio.sleep(1.0)
    return final


async def read_all(api: Api, rides: set[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Every acknowledged ride read once more at the end: (status code, ride status) per ride."""
    headers = api.auth("ops", "chaos-checker")
    codes: dict[str, int] = {}
    statuses: dict[str, str] = {}
    for ride_id in sorted(rides):
        response = await api.until_answered("GET", f"/v1/rides/{ride_id}", 30.0, headers=headers)
        codes[ride_id] = response.status_code if response is not None else 0
        if response is not None and response.status_code == 200:
            statuses[ride_id] = response.json()["status"]
    return codes, statuses


def status_healthy_within(platform: Platform, timeout_s: float) -> tuple[bool, float, str]:
    """Poll `ridepulse status` until it exits 0: (healthy, seconds taken, last output)."""
    started = time.monotonic()
    env = clean_env(RIDEPULSE_DATA_DIR=str(platform.data_dir))
    out = ""
    while time.monotonic() - started < timeout_s:
        result = subprocess.run(
            [tool("ridepulse"), "status"], capture_output=True, text=True, env=env, timeout=30
        )
        out = result.stdout + result.stderr
        if result.returncode == 0:
            return True, round(time.monotonic() - started, 1), out
        time.sleep(1.0)
    return False, round(time.monotonic() - started, 1), out


async def load_and_break(platform: Platform, cfg: Config) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    ledger = Ledger()
    api = Api(platform.api, platform.secret, ledger)
    stop_drivers, stop_chaos = asyncio.Event(), asyncio.Event()
    drivers = [
        Driver(api, f"chaos-driver-{i}", random.Random(rng.random())) for i in range(cfg.drivers)
    ]
    driver_tasks = [asyncio.create_task(d.run(stop_drivers)) for d in drivers]
    probe = asyncio.create_task(prober(api, stop_drivers))
    await asyncio.sleep(5.0)  # drivers online and indexed before the first request
    started, started_epoch = time.monotonic(), time.time()
    monkey = Monkey(platform, random.Random(rng.random()), started, started_epoch)
    chaos = asyncio.create_task(monkey.run(cfg, stop_chaos))
    recovery = asyncio.create_task(monkey.measure_recovery(stop_chaos))
    ticker = asyncio.create_task(progress(ledger, monkey, stop_chaos))
    run_id = f"{cfg.seed}-{int(time.time())}"
    print(f"chaos: load for {cfg.duration_s:.0f}s with faults", flush=True)
    await riders(api, cfg.rate_per_s, cfg.duration_s, run_id, random.Random(rng.random()))
    stop_chaos.set()
    load_end = time.monotonic()
    await asyncio.gather(chaos, ticker)
    await asyncio.gather(*monkey.pings)  # the Valkey kill's PING timing, if it is still going
    outage_s, outage_at = longest_gap(ledger.answered_at, started, load_end)
    rides = {r for ids in ledger.acknowledged.values() for r in ids}
    print(f"chaos: {len(rides)} rides acknowledged; draining", flush=True)
    await drain(api, rides, cfg.ride_deadline_s + DRAIN_AFTER_DEADLINE_S)
    drain_s = time.monotonic() - load_end
    stop_drivers.set()
    await asyncio.gather(*driver_tasks, probe)
    await asyncio.wait_for(recovery, timeout=30)
    readable, final = await read_all(api, rides)
    await api.close()
    return {
        "ledger": ledger,
        "final": final,
        "readable": readable,
        "faults": monkey.faults,
        "started_epoch": started_epoch,
        "outage": (round(outage_s, 2), round(outage_at - started, 1)),
        "drain_s": round(drain_s, 1),
    }


def run(cfg: Config) -> int:
    work = Path(tempfile.mkdtemp(prefix="ridepulse-chaos-"))
    env = {
        "RIDEPULSE_RIDE_DEADLINE_S": str(cfg.ride_deadline_s),
        "RIDEPULSE_OFFER_TIMEOUT_S": str(cfg.offer_timeout_s),
    }
    platform = Platform(work / "city", "--no-sim", env=env)
    print(f"chaos: seed {cfg.seed}, data dir {work}", flush=True)
    verdicts: list[Verdict] = []
    summary: dict[str, Any] = {}
    try:
        platform.wait_up(180)
        seen = uvloop.run(load_and_break(platform, cfg))
        events = read_ride_stream(platform)
        ledger: Ledger = seen["ledger"]
        verdicts = judge(
            acknowledged=dict(ledger.acknowledged),
            unanswered=ledger.unanswered,
            readable=seen["readable"],
            final_status=seen["final"],
            events=events,
            min_completed=cfg.min_completed,
        )
        if ledger.rejected:
            verdicts.append(Verdict("no ride request refused", False, "4xx", ledger.rejected[:10]))
        # what the supervisor saw die, against what the monkey killed (loadtests/chaos/deaths.py)
        log = read_supervisor_log(platform.text().splitlines(), seen["started_epoch"])
        faults = seen["faults"]
        verdicts.append(valkey_kill_verdict(expected=cfg.valkey_kill, faults=faults, log=log))
        if cfg.valkey_kill:
            verdicts.append(ride_out_verdict(faults=faults, log=log))
        verdicts.append(only_the_monkeys_kills_verdict(faults=faults, log=log))
        healthy, took_s, status_out = status_healthy_within(platform, STATUS_WITHIN_S)
        verdicts.append(
            Verdict(
                f"ridepulse status healthy within {STATUS_WITHIN_S:.0f}s",
                healthy,
                f"healthy after {took_s}s" if healthy else f"unhealthy: {status_out[-800:]}",
            )
        )
        outage_s, _outage_at = seen["outage"]
        if cfg.max_outage_s is not None:
            verdicts.append(
                Verdict(
                    f"API outage at most {cfg.max_outage_s:.0f}s",
                    outage_s <= cfg.max_outage_s,
                    f"longest {outage_s}s",
                )
            )
        summary = _summary(cfg, seen, events)
    except Exception as exc:
        verdicts.append(Verdict("the run itself", False, f"{type(exc).__name__}: {exc}"))
        platform.print_logs()
    finally:
        try:
            code = platform.stop(90)
        except subprocess.TimeoutExpired:
            code = -1
        verdicts.append(Verdict("ridepulse up stops cleanly", code == 0, f"exit code {code}"))
    code = _report(cfg, verdicts, summary, work)
    if code == 0 and not cfg.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    return code


def _summary(cfg: Config, seen: dict[str, Any], events: list[RideEvent]) -> dict[str, Any]:
    ledger: Ledger = seen["ledger"]
    faults: list[Fault] = seen["faults"]
    back = [f.back_after_s for f in faults if f.back_after_s is not None and f.target != VALKEY]
    valkey = [asdict(f) for f in faults if f.target == VALKEY]
    statuses: dict[str, int] = {}
    for status in seen["final"].values():
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "ride_requests": len(ledger.acknowledged) + len(ledger.unanswered),
        "rides_acknowledged": sum(len(ids) for ids in ledger.acknowledged.values()),
        "final_statuses": statuses,
        "service_kills": len(faults) - len(valkey),
        "valkey_kills": valkey,
        "service_back_after_s": {
            "max": max(back, default=None),
            "mean": round(sum(back) / len(back), 2) if back else None,
        },
        "longest_api_outage_s": seen["outage"][0],
        "longest_api_outage_began_at_s": seen["outage"][1],
        "api_calls": ledger.calls,
        "api_calls_unanswered_then_retried": ledger.transient,
        "drain_s": seen["drain_s"],
        "ride_stream_events": len(events),
        "faults": [asdict(f) for f in faults],
    }


def _report(cfg: Config, verdicts: list[Verdict], summary: dict[str, Any], work: Path) -> int:
    failed = [v for v in verdicts if not v.ok]
    cfg.report.parent.mkdir(parents=True, exist_ok=True)
    cfg.report.write_text(
        json.dumps(
            {"passed": not failed, "verdicts": [asdict(v) for v in verdicts], **summary}, indent=2
        )
    )
    print("\nchaos: results")
    for key in (
        "ride_requests",
        "rides_acknowledged",
        "final_statuses",
        "service_kills",
        "valkey_kills",
        "service_back_after_s",
        "longest_api_outage_s",
        "longest_api_outage_began_at_s",
        "drain_s",
    ):
        if key in summary:
            print(f"  {key}: {summary[key]}")
    for v in verdicts:
        print(f"  [{'PASS' if v.ok else 'FAIL'}] {v.name}: {v.detail}")
        for example in v.examples:
            print(f"        {example}")
    print(
        f"chaos: {'PASSED' if not failed else 'FAILED'}; report in {cfg.report}; data in {work}",
        flush=True,
    )
    return 1 if failed else 0
