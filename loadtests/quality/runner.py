"""Plays stages of scenarios through real platforms and writes what they recorded.

A stage is a tuple of scenarios played at the same time, one per market (the batching sweep
plays its busy city in sf and its quiet one in nyc at once). Consecutive stages whose scenarios
ask for the same settings share one `ridepulse up --no-sim` (the shared launcher in
loadtests.platform), started with those settings and the markets they use; a change of
settings starts a fresh platform with an empty data dir, so the ETA model starts cold again.

Output (`out`, by default docs/quality-runs/): one `<scenario>.csv` of RideRecords per scenario
and `runs.json` with each scenario's run facts (requests, declined for price, driver
utilisation, when its platform started, wall time, load average). A partial run (`--only`)
merges into an existing runs.json."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import uvloop

from loadtests.chaos.city import Api, Ledger
from loadtests.platform import Platform
from loadtests.quality.city import CityResult, play
from loadtests.quality.records import write_csv
from loadtests.quality.scenario import Scenario

Stage = tuple[Scenario, ...]
RUNS_JSON = "runs.json"


def platform_env(stage: Stage) -> dict[str, str]:
    """The settings a stage needs: its scenarios' env (which must agree) and its markets."""
    env: dict[str, str] = {}
    for scenario in stage:
        for key, value in scenario.env.items():
            if env.get(key, value) != value:
                raise ValueError(f"stage mixes {key}={env[key]} and {key}={value}")
            env[key] = value
    markets = sorted({s.market for s in stage})
    if len(markets) != len(stage):
        raise ValueError("scenarios played at once need a market each")
    env["RIDEPULSE_MARKETS"] = ",".join(markets)
    return env


def group_stages(stages: Sequence[Stage]) -> list[tuple[dict[str, str], list[Stage]]]:
    """Consecutive stages with the same platform settings, to share one platform start."""
    groups: list[tuple[dict[str, str], list[Stage]]] = []
    for stage in stages:
        env = platform_env(stage)
        if groups and groups[-1][0] == env:
            groups[-1][1].append(stage)
        else:
            groups.append((env, [stage]))
    return groups


async def play_stage(stage: Stage, platform: Platform) -> list[CityResult]:
    api = Api(platform.api, platform.secret, Ledger())
    try:
        return list(await asyncio.gather(*(play(s, api, platform.redis_url()) for s in stage)))
    finally:
        await api.close()


def run_stages(stages: Sequence[Stage], out: Path, keep_data: bool = False) -> dict[str, Any]:
    """Every stage through a platform; CSVs and runs.json under `out`. Returns the run facts."""
    out.mkdir(parents=True, exist_ok=True)
    facts = _read_facts(out)
    began = time.monotonic()
    groups = group_stages(stages)
    for number, (env, group) in enumerate(groups, 1):
        settings = " ".join(f"{k.removeprefix('RIDEPULSE_')}={v}" for k, v in sorted(env.items()))
        print(f"quality: platform {number}/{len(groups)} ({settings})", flush=True)
        work = Path(tempfile.mkdtemp(prefix="ridepulse-quality-"))
        platform = Platform(work / "city", "--no-sim", env=env)
        ok = False
        try:
            up_began = time.monotonic()
            platform.wait_up(240)
            platform_started_ms = int(time.time() * 1000)
            print(f"quality:   up in {time.monotonic() - up_began:.0f}s", flush=True)
            for stage in group:
                names = ", ".join(s.name for s in stage)
                print(f"quality:   playing {names}", flush=True)
                stage_began = time.monotonic()
                load = os.getloadavg()[0]
                results = uvloop.run(play_stage(stage, platform))
                for scenario, result in zip(stage, results, strict=True):
                    write_csv(out / f"{scenario.name}.csv", result.records)
                    facts[scenario.name] = _facts(
                        scenario, result, platform_started_ms, time.monotonic() - stage_began, load
                    )
                    print(f"quality:   {scenario.name}: {_line(result)}", flush=True)
            ok = True
        except Exception:
            platform.print_logs(30)
            raise
        finally:
            try:
                platform.stop(90)
            except subprocess.TimeoutExpired:
                print("quality: ridepulse up did not stop in 90 s; killed", flush=True)
            if ok and not keep_data:
                shutil.rmtree(work, ignore_errors=True)
        (out / RUNS_JSON).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    print(f"quality: all stages played in {time.monotonic() - began:.0f}s", flush=True)
    return facts


def _facts(
    scenario: Scenario,
    result: CityResult,
    platform_started_ms: int,
    wall_s: float,
    load: float,
) -> dict[str, Any]:
    return {
        "drivers": scenario.drivers,
        "seed": scenario.seed,
        "market": scenario.market,
        "hour": scenario.hour,
        "env": dict(scenario.env),
        "demand": [list(p) for p in scenario.demand.points],
        "requests": result.requests,
        "declined_for_price": result.declined_for_price,
        "unanswered": result.unanswered,
        "rides": len(result.records),
        "utilisation": None if result.utilisation is None else round(result.utilisation, 4),
        "surge_samples": [list(sample) for sample in result.surge_samples],
        "platform_started_ms": platform_started_ms,
        "started_ms": result.started_ms,
        "wall_s": round(wall_s, 1),
        "load_avg_1m": round(load, 2),
    }


def _line(result: CityResult) -> str:
    done = sum(r.completed_ms is not None for r in result.records)
    served = sum(r.fulfilled for r in result.records)
    return (
        f"{result.requests} requests, {len(result.records)} rides, {served} served in time, "
        f"{done} completed, {result.declined_for_price} declined for price"
    )


def _read_facts(out: Path) -> dict[str, Any]:
    path = out / RUNS_JSON
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    return {}


def select(stages: Iterable[Stage], only: set[str] | None) -> list[Stage]:
    """The stages with at least one scenario named in `only` (all when None)."""
    if not only:
        return list(stages)
    return [s for s in stages if any(x.name in only for x in s)]
