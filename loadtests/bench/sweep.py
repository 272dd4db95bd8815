"""The capacity sweep (issue 10): the whole platform at rising telemetry rates with 100 rides/s,
the current tree and the previous release alternating step by step (ABAB), a calibration of the
machine in the same run, and the knee plotted.

The previous release runs from a `git worktree` of its tag, put first on PYTHONPATH of the same
venv (its pinned dependencies are the current ones), so both contenders share one interpreter."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from loadtests.bench.e2e import E2EConfig, run_e2e
from loadtests.bench.http_figures import SINGLE_CONNECTIONS, Load, raw_xadd, single_ping_requests
from loadtests.bench.knee import knee, step_from_e2e
from loadtests.bench.measure import say
from loadtests.bench.servers import start_peer
from loadtests.bench.stats import paired_ratio
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import EmbeddedRedis

REPO = Path(__file__).resolve().parents[2]
CURRENT = "current"
FULL_RATES = (10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 150_000)
# Releases by commit, so a clone without tags can still check one out: v0.1.0 is main as it
# stood before the overload, fault and cluster work (2026-11-29), the release issue 10 measured.
RELEASES = {"v0.1.0": "0f1835360eea1af5ed22e24bdc697b5bf39966f4"}


@dataclass(frozen=True)
class SweepPlan:
    rates: tuple[int, ...] = FULL_RATES
    rides_per_s: float = 100.0
    seconds: float = 30.0
    reps: int = 1  # whole ABAB sweeps; the knee ratio's pairs (5 for a published ratio)
    previous: str | None = "v0.1.0"  # a name in RELEASES, a tag or commit; None: current alone
    calibration_s: float = 5.0


def step_config(rate: int, plan: SweepPlan) -> E2EConfig:
    """Each driver pings every 4 s (fleet capped at 200k); enough available drivers for every
    ride of the step to hold one."""
    return E2EConfig(
        pings_per_s=rate,
        rides_per_s=plan.rides_per_s,
        seconds=plan.seconds,
        fleet_size=min(max(rate * 4, 8_000), 200_000),
        available_drivers=int(plan.rides_per_s * plan.seconds * 1.3) + 1_000,
    )


@contextlib.contextmanager
def release_tree(tag: str) -> Iterator[Path]:
    """A detached worktree of `tag` in a temp dir, removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix=f"ridepulse-{tag}-")) / "tree"
    git = ["git", "-C", str(REPO)]
    commit = RELEASES.get(tag, tag)
    subprocess.run([*git, "worktree", "add", "--detach", str(where), commit], check=True)
    try:
        yield where
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(where)], check=False)
        shutil.rmtree(where.parent, ignore_errors=True)


def calibrate(work: Path, seconds: float, wrk_binary: str | None) -> dict[str, float]:
    """The machine's speed now: a FastAPI hello world's req/s (the single-ping load, 64
    connections) and pipelined XADD pings/s from one Python client to the embedded server."""
    with contextlib.ExitStack() as running:  # stops whatever started, even if a later start fails
        server = EmbeddedRedis(work / "calibration-redis", key_prefix="bench").start()
        running.callback(server.stop)
        hello = start_peer("hello", env={}, logs=work / "logs")
        running.callback(hello.stop)
        requests = single_ping_requests(secrets.token_urlsafe(32))[:256]
        load = Load.write(work / "calibration.txt", requests, SINGLE_CONNECTIONS, wrk_binary)
        floor = load.drive(hello, seconds)
        stream = MarketKeys("sf", "bench").telemetry
        raw = raw_xadd(server.url_for("ingest"), stream, seconds)
        redis.Redis.from_url(server.url).delete(stream)
    return {
        "hello_req_per_s": round(floor.ok_per_s, 1),
        "raw_xadd_pings_per_s": round(raw["pings"] / raw["seconds"], 1),
    }


def run_sweep(plan: SweepPlan, work: Path, wrk_binary: str | None) -> dict[str, Any]:
    say(f"== sweep: calibration ({plan.calibration_s:g} s each)")
    calibration = calibrate(work, plan.calibration_s, wrk_binary)
    say(f"   {calibration}")
    with contextlib.ExitStack() as stack:
        envs: dict[str, dict[str, str] | None] = {CURRENT: None}
        if plan.previous:
            tree = stack.enter_context(release_tree(plan.previous))
            envs[plan.previous] = {"PYTHONPATH": str(tree)}

        def measure(name: str, rep: int, rate: int) -> dict[str, Any]:
            level = asyncio.run(
                run_e2e(step_config(rate, plan), work / f"{name}-{rep}-{rate}", envs[name])
            )
            level.pop("telemetry_stream", None)  # the sweep table does not use it
            return level

        levels = climb(plan, list(envs), measure)
    return summarise(plan, calibration, levels)


def climb(
    plan: SweepPlan, names: list[str], measure: Callable[[str, int, int], dict[str, Any]]
) -> dict[str, list[list[dict[str, Any]]]]:
    """Each sweep: every rate in turn, the contenders alternating per step (ABAB, then BABA),
    `measure(name, rep, rate)` giving one e2e result. A contender's climb ends at its first
    failing step: the knee never looks past it (knee.knee), so the steps above would only cost
    time (a collapsing step is the slowest of all), and the table lists steps up to that one."""
    levels: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
    for rep in range(plan.reps):
        for runs in levels.values():
            runs.append([])
        climbing = set(names)
        for index, rate in enumerate(plan.rates):
            for name in names if (rep + index) % 2 == 0 else names[::-1]:
                if name not in climbing:
                    continue
                say(f"== sweep rep {rep + 1}/{plan.reps}: {name} @ {rate} pings/s")
                level = measure(name, rep, rate)
                levels[name][rep].append(level)
                step = step_from_e2e(level)
                say(f"   {asdict(step)}")
                if not step.holds:
                    climbing.discard(name)
    return levels


def summarise(
    plan: SweepPlan, calibration: dict[str, float], levels: dict[str, list[list[dict[str, Any]]]]
) -> dict[str, Any]:
    """The sweep's JSON: steps per contender and rep, knees, and the paired knee ratio."""
    knees = {
        name: [knee([step_from_e2e(level) for level in run]) for run in runs]
        for name, runs in levels.items()
    }
    knee_ratio = None
    if plan.previous in knees:
        theirs = [float(k or 0) for k in knees[plan.previous]]
        if pairs := paired_ratio([float(k or 0) for k in knees[CURRENT]], theirs):
            knee_ratio = {
                "pairs": list(pairs.pairs),
                "median": pairs.median,
                "low": pairs.low,
                "high": pairs.high,
                "met_2x": pairs.verdict(2.0),
            }
    return {
        "plan": {**asdict(plan), "rates": list(plan.rates)},
        "calibration": calibration,
        "levels": levels,
        "knees": knees,
        "knee_ratio": knee_ratio,
    }


def plot(sweep: dict[str, Any], path: Path) -> None:
    """Request→offered p99 and worst lag against the offered rate, one line per contender, the
    thresholds dashed and each knee marked (first rep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (p99_ax, lag_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name, runs in sweep["levels"].items():
        steps = [step_from_e2e(level) for level in runs[0]]
        rates = [s.offered_pings_per_s / 1000 for s in steps]
        p99_ax.plot(rates, [s.offer_p99_ms or float("nan") for s in steps], "o-", label=name)
        lag_ax.plot(rates, [max(s.lag_s, 0.01) for s in steps], "o-", label=name)
        found = knee(steps)
        if found is not None:
            for ax in (p99_ax, lag_ax):
                ax.axvline(found / 1000, linestyle=":", color=ax.lines[-1].get_color())
    for ax, limit, label in ((p99_ax, 100, "request→offered p99 (ms)"), (lag_ax, 1, "lag (s)")):
        ax.axhline(limit, linestyle="--", color="grey")
        ax.set_yscale("log")
        ax.set_xlabel("offered telemetry (k pings/s), 100 rides/s")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("Capacity sweep: the knee (dotted) is the last rate under both limits")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
