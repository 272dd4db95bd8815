"""Who died during a chaos run and who killed it: the supervisor's log (`ridepulse up`'s output)
against the monkey's own SIGKILLs. A kill the monkey did not make, or a Valkey kill that never
happened, fails the run here. Pure functions, unit-tested in tests/unit/test_chaos_deaths.py."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from loadtests.chaos.checks import Verdict

VALKEY = "valkey"  # the supervisor's (and loadtests/platform.py's) name for the server process
# How long after Valkey answers again a service that gave up on its connection may still die:
# the bus backs off at most a few seconds between attempts (ridepulse/bus/faults.py), so a
# service that exits on a failed reconnect does so well inside 10 s.
RIDE_OUT_GRACE_S = 10.0
_SUPERVISOR_EVENTS = frozenset({"service.spawned", "service.ready", "service.died"})


@dataclass
class Fault:
    """One SIGKILL the monkey sent; times in seconds since the monkey started."""

    at_s: float
    target: str
    pid: int
    back_after_s: float | None = None  # until a new process of that name was running
    answered_after_s: float | None = None  # Valkey only: until a new server answered PING


@dataclass(frozen=True, slots=True)
class Spawn:
    at_s: float
    name: str
    pid: int


@dataclass(frozen=True, slots=True)
class Death:
    """A death the supervisor noticed; `pid` is the last process it had spawned under `name`
    (its `service.died` line names no pid)."""

    at_s: float
    name: str
    pid: int | None
    exit_code: int | None


@dataclass
class SupervisorLog:
    spawns: list[Spawn] = field(default_factory=list)
    ready: list[Spawn] = field(default_factory=list)
    deaths: list[Death] = field(default_factory=list)


def read_supervisor_log(lines: Iterable[str], since_epoch: float) -> SupervisorLog:
    """The spawns, readiness and deaths in `ridepulse up`'s JSON lines, timed in seconds since
    `since_epoch` (the wall-clock time the monkey started); other lines are skipped."""
    log = SupervisorLog()
    current: dict[str, int] = {}
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("event") not in _SUPERVISOR_EVENTS:
            continue
        name, pid, at_s = record.get("name"), record.get("pid"), _at_s(record, since_epoch)
        if not isinstance(name, str) or at_s is None:
            continue
        if record["event"] == "service.died":
            code = record.get("exit_code")
            log.deaths.append(Death(at_s, name, current.get(name), code))
        elif isinstance(pid, int) and record["event"] == "service.spawned":
            current[name] = pid
            log.spawns.append(Spawn(at_s, name, pid))
        elif isinstance(pid, int):
            log.ready.append(Spawn(at_s, name, pid))
    return log


def _at_s(record: dict[str, object], since_epoch: float) -> float | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return round(datetime.fromisoformat(stamp).timestamp() - since_epoch, 3)
    except ValueError:
        return None


def valkey_kill_verdict(*, expected: bool, faults: Sequence[Fault], log: SupervisorLog) -> Verdict:
    """With the Valkey kill on: the monkey killed the server exactly once, the supervisor saw
    that very process die once and spawned a new one, and the new one answered PING."""
    kills = [f for f in faults if f.target == VALKEY]
    deaths = [d for d in log.deaths if d.name == VALKEY]
    if not expected:
        problems = [f"the monkey killed Valkey at {f.at_s}s" for f in kills]
        problems += [f"Valkey died at {d.at_s}s (exit {d.exit_code})" for d in deaths]
        return Verdict("Valkey never died (--no-valkey-kill)", not problems, "never died", problems)
    name = "Valkey SIGKILLed once, restarted by the supervisor, answering PING"
    problems = []
    if len(kills) != 1:
        problems.append(f"the monkey killed Valkey {len(kills)} times, not once")
    if len(deaths) != 1:
        problems.append(f"the supervisor saw Valkey die {len(deaths)} times, not once")
    if problems:
        return Verdict(name, False, "; ".join(problems), problems)
    kill, death = kills[0], deaths[0]
    if death.pid != kill.pid:
        problems.append(f"the supervisor saw pid {death.pid} die, the monkey killed {kill.pid}")
    restart = next(
        (s for s in log.spawns if s.name == VALKEY and s.at_s >= death.at_s and s.pid != kill.pid),
        None,
    )
    if restart is None:
        problems.append(f"no new Valkey process spawned after its death at {death.at_s}s")
    if kill.answered_after_s is None:
        problems.append("no new Valkey process answered PING after the kill")
    if problems or restart is None:
        return Verdict(name, False, f"killed at {kill.at_s}s (pid {kill.pid})", problems)
    return Verdict(
        name,
        True,
        f"killed at {kill.at_s}s (pid {kill.pid}); respawned as pid {restart.pid}; "
        f"answered PING {kill.answered_after_s}s after the kill",
    )


def ride_out_verdict(
    *, faults: Sequence[Fault], log: SupervisorLog, grace_s: float = RIDE_OUT_GRACE_S
) -> Verdict:
    """From the Valkey kill until `grace_s` after it answered again, every service death the
    supervisor saw was a process the monkey killed itself: none died of the server's restart."""
    name = "no service died of the Valkey restart"
    kills = [f for f in faults if f.target == VALKEY]
    if len(kills) != 1:
        return Verdict(name, False, f"{len(kills)} Valkey kills: no restart to ride out")
    kill = kills[0]
    back = kill.answered_after_s
    end = kill.at_s + back + grace_s if back is not None else math.inf
    killed = {f.pid for f in faults}
    window = [d for d in log.deaths if d.name != VALKEY and kill.at_s <= d.at_s <= end]
    unexpected = [
        f"{d.name} (pid {d.pid}) died at {d.at_s}s, exit {d.exit_code}: not the monkey's kill"
        for d in window
        if d.pid is None or d.pid not in killed
    ]
    span = f"{kill.at_s}s to {end:.1f}s"
    if unexpected:
        return Verdict(name, False, f"{len(unexpected)} death(s) from {span}", unexpected[:10])
    return Verdict(
        name, True, f"{span}: {len(window)} service death(s), each one of the monkey's kills"
    )


def only_the_monkeys_kills_verdict(*, faults: Sequence[Fault], log: SupervisorLog) -> Verdict:
    """Over the whole run, every process the supervisor saw die (Valkey included) was one the
    monkey killed: no service died of a fault's after-effects (a restart storm, a poison entry,
    a lost connection), whenever it happened."""
    name = "every death was one of the monkey's kills"
    killed = {f.pid for f in faults}
    unexpected = [
        f"{d.name} (pid {d.pid}) died at {d.at_s}s, exit {d.exit_code}: not the monkey's kill"
        for d in log.deaths
        if d.pid is None or d.pid not in killed
    ]
    if unexpected:
        return Verdict(name, False, f"{len(unexpected)} other death(s)", unexpected[:10])
    return Verdict(name, True, f"{len(log.deaths)} death(s), {len(faults)} kill(s)")
