"""The chaos suite's Valkey verdicts catch what they claim to catch: a Valkey kill that did not
happen (or was not restarted), and a service that died of the server's restart."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from loadtests.chaos.deaths import (
    Death,
    Fault,
    Spawn,
    SupervisorLog,
    only_the_monkeys_kills_verdict,
    read_supervisor_log,
    ride_out_verdict,
    valkey_kill_verdict,
)

EPOCH = 1_800_000_000.0  # the wall clock when the monkey started


def line(at_s: float, event: str, name: str, **more: object) -> str:
    """One supervisor line as `ridepulse up` writes it (structlog JSON, ISO UTC time)."""
    stamp = datetime.fromtimestamp(EPOCH + at_s, UTC).isoformat().replace("+00:00", "Z")
    record = {"name": name, **more, "event": event, "level": "info", "timestamp": stamp}
    return orjson.dumps(record).decode()


def clean_log() -> SupervisorLog:
    """Valkey (pid 10) killed at 30 s, back as pid 11; ingest killed by the monkey at 31 s."""
    return SupervisorLog(
        spawns=[
            Spawn(-60.0, "valkey", 10),
            Spawn(-59.0, "ingest", 20),
            Spawn(30.15, "valkey", 11),
            Spawn(31.1, "ingest", 21),
        ],
        ready=[Spawn(30.4, "valkey", 11)],
        deaths=[
            Death(30.1, "valkey", 10, -9),
            Death(31.05, "ingest", 20, -9),
        ],
    )


def clean_faults() -> list[Fault]:
    return [Fault(30.0, "valkey", 10, 0.1, 0.3), Fault(31.0, "ingest", 20, 0.1)]


def test_the_log_gives_each_death_the_pid_last_spawned_under_its_name() -> None:
    lines = [
        "RidePulse is up.",
        line(-5.0, "service.spawned", "matching", pid=100),
        line(-4.0, "service.ready", "matching", pid=100),
        "{not json",
        line(12.5, "service.died", "matching", exit_code=1, was_ready=True),
        line(12.6, "service.spawned", "matching", pid=101),
        line(12.6, "service.restarted", "matching", pid=101),
        line(20.0, "service.died", "matching", exit_code=-9),
        line(21.0, "service.died", "eta", exit_code=-9),
    ]
    log = read_supervisor_log(lines, EPOCH)
    assert log.spawns == [Spawn(-5.0, "matching", 100), Spawn(12.6, "matching", 101)]
    assert log.ready == [Spawn(-4.0, "matching", 100)]
    assert log.deaths == [
        Death(12.5, "matching", 100, 1),
        Death(20.0, "matching", 101, -9),
        Death(21.0, "eta", None, -9),
    ]


def test_a_valkey_kill_restarted_and_answering_passes_both_checks() -> None:
    verdict = valkey_kill_verdict(expected=True, faults=clean_faults(), log=clean_log())
    assert verdict.ok, verdict
    assert "killed at 30.0s (pid 10)" in verdict.detail
    assert "respawned as pid 11" in verdict.detail and "PING 0.3s" in verdict.detail
    ride_out = ride_out_verdict(faults=clean_faults(), log=clean_log())
    assert ride_out.ok, ride_out
    assert "1 service death(s)" in ride_out.detail


def test_a_valkey_kill_that_never_happened_fails_both_checks() -> None:
    faults = [f for f in clean_faults() if f.target != "valkey"]
    log = clean_log()
    log.deaths = [d for d in log.deaths if d.name != "valkey"]
    verdict = valkey_kill_verdict(expected=True, faults=faults, log=log)
    assert not verdict.ok
    assert verdict.examples == [
        "the monkey killed Valkey 0 times, not once",
        "the supervisor saw Valkey die 0 times, not once",
    ]
    assert not ride_out_verdict(faults=faults, log=log).ok


def test_a_valkey_kill_the_supervisor_never_saw_fails() -> None:
    log = clean_log()
    log.deaths = [d for d in log.deaths if d.name != "valkey"]
    verdict = valkey_kill_verdict(expected=True, faults=clean_faults(), log=log)
    assert not verdict.ok
    assert verdict.examples == ["the supervisor saw Valkey die 0 times, not once"]


def test_valkey_killed_twice_fails() -> None:
    faults = [*clean_faults(), Fault(40.0, "valkey", 11, 0.1, 0.2)]
    log = clean_log()
    log.deaths.append(Death(40.1, "valkey", 11, -9))
    verdict = valkey_kill_verdict(expected=True, faults=faults, log=log)
    assert not verdict.ok
    assert "the monkey killed Valkey 2 times, not once" in verdict.examples


def test_valkey_not_respawned_or_not_answering_fails() -> None:
    log = clean_log()
    log.spawns = [s for s in log.spawns if s.pid != 11]
    faults = clean_faults()
    faults[0].answered_after_s = None
    verdict = valkey_kill_verdict(expected=True, faults=faults, log=log)
    assert not verdict.ok
    assert verdict.examples == [
        "no new Valkey process spawned after its death at 30.1s",
        "no new Valkey process answered PING after the kill",
    ]


def test_the_supervisor_seeing_another_valkey_pid_die_fails() -> None:
    log = clean_log()
    log.deaths[0] = Death(30.1, "valkey", 9, -9)
    verdict = valkey_kill_verdict(expected=True, faults=clean_faults(), log=log)
    assert not verdict.ok
    assert verdict.examples == ["the supervisor saw pid 9 die, the monkey killed 10"]


def test_without_the_valkey_kill_valkey_must_not_die_at_all() -> None:
    faults = [Fault(31.0, "ingest", 20, 0.1)]
    quiet = SupervisorLog(deaths=[Death(31.05, "ingest", 20, -9)])
    assert valkey_kill_verdict(expected=False, faults=faults, log=quiet).ok
    died = SupervisorLog(deaths=[Death(44.0, "valkey", 10, 1)])
    verdict = valkey_kill_verdict(expected=False, faults=faults, log=died)
    assert not verdict.ok
    assert verdict.examples == ["Valkey died at 44.0s (exit 1)"]


def test_a_service_that_died_of_the_valkey_restart_fails_the_ride_out() -> None:
    log = clean_log()
    log.deaths.append(Death(30.2, "matching", 30, 1))  # not the monkey's: it gave up on Redis
    verdict = ride_out_verdict(faults=clean_faults(), log=log)
    assert not verdict.ok
    assert verdict.examples == ["matching (pid 30) died at 30.2s, exit 1: not the monkey's kill"]


def test_a_death_whose_pid_is_unknown_counts_against_the_ride_out() -> None:
    log = clean_log()
    log.deaths.append(Death(35.0, "eta", None, -9))
    assert not ride_out_verdict(faults=clean_faults(), log=log).ok


def test_the_ride_out_window_ends_its_grace_after_valkey_answered() -> None:
    # Valkey killed at 30.0 s and answering 0.3 s later: the window closes at 40.3 s
    inside, outside = Death(40.2, "eta", 40, 1), Death(40.4, "pricing", 41, 1)
    log = clean_log()
    log.deaths += [inside, outside]
    verdict = ride_out_verdict(faults=clean_faults(), log=log)
    assert not verdict.ok
    assert [e.split(" ")[0] for e in verdict.examples] == ["eta"]
    before = clean_log()
    before.deaths.append(Death(29.9, "eta", 40, 1))  # before the kill: not the restart's doing
    assert ride_out_verdict(faults=clean_faults(), log=before).ok


def test_a_valkey_that_never_answered_again_keeps_the_window_open() -> None:
    faults = clean_faults()
    faults[0].answered_after_s = None
    log = clean_log()
    log.deaths.append(Death(300.0, "janitor", 50, 1))
    assert not ride_out_verdict(faults=faults, log=log).ok


def test_deaths_that_are_all_the_monkeys_kills_pass() -> None:
    verdict = only_the_monkeys_kills_verdict(faults=clean_faults(), log=clean_log())
    assert verdict.ok
    assert verdict.detail == "2 death(s), 2 kill(s)"


def test_a_death_long_after_any_valkey_kill_still_fails_the_whole_run_check() -> None:
    log = clean_log()
    log.deaths.append(Death(300.0, "pricing", 20 + 50, 1))  # outside any ride-out window
    assert ride_out_verdict(faults=clean_faults(), log=log).ok
    verdict = only_the_monkeys_kills_verdict(faults=clean_faults(), log=log)
    assert not verdict.ok
    assert verdict.examples == ["pricing (pid 70) died at 300.0s, exit 1: not the monkey's kill"]
