"""docs/benchmarks.md: the machine, the command, the table with peers, the date, the
bottlenecks — all rendered from one run's results (only real figures)."""

from __future__ import annotations

from typing import Any

from loadtests.bench import report
from loadtests.bench.report import fmt_number, render_table
from ridepulse.settings import Settings

NOISY_CORES = 0.25  # other processes using more than this share of the machine: say so


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    p = m["packages"]
    plan = results["plan"]
    return [
        f"- **Date:** {m['date']} · **command:** `{results.get('command', 'make bench')}` · "
        f"total run time {results['duration_s']:.0f} s",
        f"- **Machine:** {m['cores']} cores, {m['cpu_model']}, {m['ram_gb']} GB RAM, Linux "
        f"{m['kernel']}",
        f"- **Versions:** Python {m['python']}, Valkey {m['valkey']} (embedded, AOF everysec), "
        f"redis-py {p['redis']} + hiredis {p['hiredis']}, FastAPI {p['fastapi']}, Starlette "
        f"{p['starlette']}, uvicorn {p['uvicorn']} (uvloop {p['uvloop']}, httptools "
        f"{p['httptools']}), pydantic {p['pydantic']}, FastStream {p['faststream']}",
        f"- **Load generator:** {m['wrk'] or 'the asyncio client in loadtests/bench/loadgen.py'}; "
        f"{plan['reps']} repetitions × {plan['seconds']:g} s per contender, interleaved, after a "
        f"{plan['warmup_s']:g} s warm-up; figures are medians",
    ]


def _noise(results: dict[str, Any]) -> list[str]:
    noise = results["noise"]
    worst = max((n["foreign_cores"] for n in noise.values()), default=0.0)
    cells = [
        [phase, f"{n['seconds']:g} s", f"{n['our_cores']:.2f}", f"{n['foreign_cores']:.2f}"]
        for phase, n in noise.items()
    ]
    verdict = (
        "**The run was noisy:** other processes (other engineers' test runs on this shared "
        f"machine) used up to {worst:.2f} of the {results['machine']['cores']} cores during a "
        "phase. Absolute figures are lower than on a quiet machine; the ratios hold better, "
        "because each peer ran interleaved with ours under the same conditions."
        if worst > NOISY_CORES
        else f"The machine was quiet: other processes used at most {worst:.2f} cores during any "
        "phase."
    )
    return [
        verdict,
        "",
        render_table(("phase", "wall", "cores used by the bench", "cores used by others"), cells),
    ]


def render_document(results: dict[str, Any]) -> str:
    figures = results["figures"]
    out = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`python -m loadtests.bench`, source in `loadtests/bench/`): "
        "every figure against a peer measured in the same run. Raw repetitions and machine "
        "details: [benchmarks.json](benchmarks.json).",
        "",
    ]
    out += [
        *_machine(results),
        "",
        *_noise(results),
        "",
        "## Figures",
        "",
        report.render_rows(report.headline_rows(figures)),
        "",
    ]
    out += _bottlenecks(results)
    out += _details(figures)
    out += _e2e(figures.get("e2e", []))
    out += _profiles(results.get("profiles", {}))
    out += _dashboard_fanout()
    out += _method()
    return "\n".join(out).rstrip() + "\n"


def _details(figures: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, title in (
        ("single_ping", "Single-ping HTTP ingest (req/s)"),
        ("batch", "Batch telemetry (pings/s)"),
        ("consumer", "Telemetry consumer (pings/s)"),
    ):
        figure = figures.get(key)
        if not figure:
            continue
        rows = []
        for name, m in figure.items():
            if not isinstance(m, dict):
                continue
            reps = ", ".join(fmt_number(v) for v in m["reps"])
            lat = ""
            if m["details"] and "p99_ms" in m["details"][0]:
                lat = " / ".join(f"{d['p50_ms']:.1f}–{d['p99_ms']:.1f}" for d in m["details"])
            rows.append(
                [name, fmt_number(m["median"]), reps, f"{(m['spread'] or 0):.0%}", lat or "—"]
            )
        out += [
            f"### {title}",
            "",
            render_table(
                ("contender", "median", "repetitions", "spread", "p50–p99 latency per rep (ms)"),
                rows,
            ),
            "",
        ]
    return out


def _e2e(levels: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for level in levels:
        cfg = level["config"]
        interval = cfg["fleet_size"] / cfg["pings_per_s"]
        out += [
            f"## End to end @ {fmt_number(cfg['pings_per_s'])} pings/s + {cfg['rides_per_s']:g} "
            "rides/s",
            "",
            f"`ridepulse up --no-sim` (every service, embedded Valkey). For {cfg['seconds']:g} s "
            f"a fleet gateway posts batches of {cfg['batch_pings']} pings ({cfg['fleet_size']:,} "
            f"drivers, each every {interval:g} s) and riders post `POST /v1/rides` at a paced "
            f"rate; {cfg['available_drivers']:,} of the drivers are available for offers. Lag is "
            "sampled every 0.5 s with XINFO GROUPS (seconds = age of the oldest entry not yet "
            "delivered to the group). Request→offered comes from the ride.requested and "
            "ride.offered events of the ride stream (both stamped with the server clock).",
            "",
            f"- telemetry: {level['telemetry']['statuses']} (HTTP status → requests); client "
            f"latency p50 {level['telemetry']['latency_ms_p50']:.0f} ms, p99 "
            f"{level['telemetry']['latency_ms_p99']:.0f} ms",
            f"- rides: {level['rides']['statuses']}; `POST /v1/rides` latency p50 "
            f"{level['rides']['latency_ms_p50']:.0f} ms, p99 "
            f"{level['rides']['latency_ms_p99']:.0f} ms (includes WAITAOF: the 202 waits for the "
            "AOF fsync)",
            f"- request→offered: p50 {fmt_number(level['offer_ms']['p50'])} ms, p99 "
            f"{fmt_number(level['offer_ms']['p99'])} ms, max "
            f"{fmt_number(level['offer_ms']['max'])} ms; {level['offer_ms']['count']} rides "
            f"offered, {level['offer_ms']['unoffered']} never offered",
            *_probe_line(level.get("candidates")),
            "",
            render_table(
                ("stream/group", "max lag (age)", "max lag (entries)", "max pending"),
                report.lag_rows(level),
            ),
            "",
            "CPU per process over the run (in cores) and Valkey's busiest commands:",
            "",
            render_table(
                ("process", "cores"),
                [
                    [k, f"{v:.2f}"]
                    for k, v in {
                        **level.get("cpu_cores", {}),
                        **level.get("cpu_totals", {}),
                    }.items()
                ],
            ),
            "",
            render_table(
                ("command", "calls", "seconds", "µs per call"),
                [
                    [
                        c["command"],
                        f"{c['calls']:,}",
                        f"{c['seconds']:.2f}",
                        f"{c['usec_per_call']:,.0f}",
                    ]
                    for c in level.get("valkey_commands", [])
                ],
            ),
            "",
            "Peak RSS per process:",
            "",
            render_table(("process", "peak RSS", "target", "met?"), report.memory_rows(level)),
            "",
            "Telemetry stream memory (MEMORY USAGE, sampled; final exact value "
            f"{level['telemetry_stream']['final_bytes'] / 2**20:.1f} MB for "
            f"{level['telemetry_stream']['final_entries']:,} entries):",
            "",
            render_table(("t", "memory", "entries"), report.stream_memory_rows(level)),
            "",
        ]
    return out


def _profiles(profiles: dict[str, Any]) -> list[str]:
    if not profiles:
        return []
    out = ["## Profiles (py-spy, sampled out of process)", ""]
    for kind, summary in profiles.get("ingest", {}).items():
        out += [
            f"- **ingest, {kind.replace('_', ' ')} load:** "
            + " ".join(report.profile_lines(summary))
        ]
    if "consumer" in profiles:
        out += [
            "- **geo consumer draining a backlog:** "
            + " ".join(report.profile_lines(profiles["consumer"]))
        ]
    return [*out, ""]


def _dashboard_fanout() -> list[str]:
    # Measured by its own tool (it needs a quiet machine for ~2 minutes), so it keeps its own page.
    return [
        "## Dashboard fan-out",
        "",
        "The live dashboard with 2,000 simulated drivers and 500 WebSocket clients is measured by "
        "`python -m loadtests.bench.dashboard_fanout`; figures, profile and headroom: "
        "[benchmarks-dashboard.md](benchmarks-dashboard.md).",
        "",
    ]


def _method() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- Every server is one uvicorn worker with ingest's settings (uvloop, httptools, no "
        "access log); the peers are in `loadtests/bench/peers/`. The single-ping load sends the "
        "very same requests to every server (8,192 drivers, each with its own driver token; the "
        "hello world ignores body and token).",
        "- wrk runs one thread with 64 connections (single ping) or 4 connections (batch), "
        "closed loop, keep-alive, no pipelining, on 127.0.0.1. Figures 1-3 pin the process under "
        "test (server, raw-XADD client, consumer) to core 1 and wrk, Valkey and the harness to "
        "core 0: per worker means per core.",
        "- Ingest starts with its garbage collector tuned (`ridepulse/gc_tuning.py`: start-up "
        "objects frozen out of the cyclic GC, a larger young generation), as every RidePulse "
        "service does. The peers run as a user would write them, with CPython's defaults; "
        "`hello-gc-tuned` is the hello world started with ingest's GC settings, so the framework "
        "floor is shown under both.",
        "- The consumer figure pre-fills a stream with N pings of N distinct drivers (entries of "
        "1000 pings, as ingest writes them) and times the consumer in its own process until the "
        "stream is drained.",
        "- The end-to-end load is open loop (paced): latency counts from each request's "
        "scheduled time.",
        "",
    ]


def _probe_line(probe: dict[str, Any] | None) -> list[str]:
    if not probe:
        return []
    return [
        f"- candidates after the run, {probe['points']} random pickups: available drivers among "
        f"the {probe['count']} nearest within {probe['radius_m']:.0f} m (what matching's "
        f"GEOSEARCH sees) {probe['mean_available_in_nearest']:.1f} on average, none at "
        f"{probe['no_available_in_nearest']} pickups; available within the radius "
        f"{probe['mean_available_in_radius']:.1f} on average "
        f"({probe['available_in_radius_but_not_in_nearest']} pickups had some, all beyond the "
        f"nearest {probe['count']})"
    ]


def _share(summary: dict[str, Any], name: str) -> str:
    return f"{summary.get('watched', {}).get(name, 0.0):.0%}"


def _bottlenecks(results: dict[str, Any]) -> list[str]:
    """One line per figure: what limits it, with this run's evidence."""
    figures, prof = results["figures"], results.get("profiles", {})
    out = ["## Bottlenecks", ""]
    single = figures.get("single_ping")
    ingest_prof = prof.get("ingest", {})
    if single:
        out.append(_single_ping_bottleneck(single, ingest_prof.get("single_ping", {})))
    batch = figures.get("batch")
    if batch:
        p = ingest_prof.get("batch", {})
        out.append(
            "- **Batch:** per-ping validation in Python: `check_ping` is "
            f"{_share(p, 'check_ping')} of the worker's samples, JSON parsing of the body "
            f"(`json_body`) {_share(p, 'json_body')}, the append (`TelemetryBatcher._append`: "
            f"orjson + XADD) {_share(p, 'TelemetryBatcher._append')}. Redis is far from the "
            "limit: the raw client appends the same entries "
            f"{batch['raw_xadd']['median'] / max(batch['ingest']['median'], 1):.0f}× faster."
        )
    consumer = figures.get("consumer")
    if consumer:
        p = prof.get("consumer", {})
        detail = consumer["matching"]["details"][0] if consumer["matching"]["details"] else {}
        # the script's own commands are also counted inside EVALSHA: count the script once
        redis_s = sum(detail.get(f"valkey_{c}_s", 0.0) for c in ("evalsha", "xreadgroup", "xack"))
        out.append(
            "- **Consumer:** Python and Valkey take turns on each batch. In one repetition "
            f"Valkey spent {redis_s:.2f} s of the {detail.get('seconds', 0):.2f} s in the update "
            "script (EVALSHA of matching/update_positions.lua: ZMSCORE, HMGET, HSET, ZADD, "
            "GEOADD) and XREADGROUP/XACK; the rest is the consumer's Python: pydantic validation "
            f"of each ping (`BaseModel.model_validate`) {_share(p, 'BaseModel.model_validate')} "
            "of samples, formatting positions (`packed_position`) "
            f"{_share(p, 'packed_position')}. Every driver is available here, the worst case: "
            "each ping also goes into the geo index. The FastStream peer waits on two round "
            "trips per message (the update, then its XACK)."
        )
    for level in figures.get("e2e", []):
        out.append(_e2e_bottleneck(level))
    if figures.get("e2e"):
        level = figures["e2e"][0]
        series = level["telemetry_stream"]["series"]
        if len(series) >= 2 and series[-1][0] > series[0][0]:
            growth = (series[-1][1] - series[0][1]) / (series[-1][0] - series[0][0]) / 2**20
            final = level["telemetry_stream"]
            worst = max(
                ((k, v) for k, v in level["rss_peak_mb"].items() if k != "valkey"),
                key=lambda kv: kv[1],
            )
            retention_s = Settings.model_fields["telemetry_retention_s"].default
            late = [(t, b) for t, b, *_ in series if t >= retention_s * 1.2]
            levelled = len(late) >= 2 and abs(late[-1][1] - late[0][1]) <= 0.1 * late[0][1]
            out.append(
                f"- **Memory:** the telemetry stream grew {growth:.1f} MB/s at first; the janitor "
                f"trims it by age (`telemetry_retention_s` = {retention_s:g} s, an entry counts "
                "by the pings it holds, not one by one), "
                + (
                    f"so it levelled off at about {late[-1][1] / 2**20:.0f} MB after "
                    f"{retention_s:g} s. "
                    if levelled
                    else f"and it ended at {final['final_bytes'] / 2**20:.0f} MB. "
                )
                + f"The largest service was {worst[0]} at {worst[1]:.0f} MB peak RSS; the rest "
                "are in the end-to-end sections."
            )
    return [*out, ""]


def _e2e_bottleneck(level: dict[str, Any]) -> str:
    cfg, lags = level["config"], level["lag"]
    geo = lags.get("telemetry/matching.geo", {}).get("max_seconds", 0.0)
    rides = lags.get("rides/matching", {}).get("max_seconds", 0.0)
    cores = level.get("cpu_cores", {})
    busiest = sorted(cores.items(), key=lambda kv: -kv[1])[:3]
    machine = level.get("cpu_totals", {}).get("machine")
    text = (
        f"- **End to end @ {fmt_number(cfg['pings_per_s'])} pings/s + {cfg['rides_per_s']:g} "
        f"rides/s:** busiest processes {', '.join(f'{k} {v:.2f}' for k, v in busiest)} cores"
        + (f" (whole machine {machine:.2f} of 2)" if machine is not None else "")
        + f"; matching's telemetry group lagged up to {geo:.1f} s, its ride group {rides:.1f} s."
    )
    out_of_cpu = machine is not None and machine >= 1.8
    if out_of_cpu:
        text += (
            " The machine is out of CPU: with every process wanting a core, the ride matcher "
            "(its own process, idle between rides) and the Valkey calls of each offer wait for "
            "their turn on the CPU; that is the likely source of the request→offered tail "
            "(compare the lower rates, where the same code has room)."
        )
    if geo > 1.0:
        text += (
            " Matching's geo consumer could not keep up with the CPU share it got: its process "
            "also serves the ride group, and every other consumer decodes the same pings."
        )
    probe = level.get("candidates") or {}
    blind = probe.get("available_in_radius_but_not_in_nearest", 0)
    empty = probe.get("no_available_in_nearest", 0) - blind
    if blind:
        text += (
            f" At {blind} of {probe['points']} probed pickups none of the {probe['count']} "
            "nearest indexed drivers was available although some further out were: the index "
            "held drivers that were no longer available."
        )
    if empty > 0:
        text += (
            f" {empty} of {probe['points']} probed pickups had no available driver within "
            f"{probe['radius_m']:.0f} m (the available fleet is spread over the whole market)."
        )
    commands = level.get("valkey_commands") or []
    if (
        commands
        and level["offer_ms"]["unoffered"] == 0
        and rides < 1.0
        and geo < 1.0
        and not out_of_cpu
    ):
        text += " Nothing saturates at this rate."
    elif commands:
        c = commands[0]
        text += (
            f" Valkey's busiest command was {c['command'].upper()}: {c['calls']:,} calls, "
            f"{c['seconds']:.1f} s, {c['usec_per_call']:,.0f} µs per call."
        )
    return text


def _single_ping_bottleneck(single: dict[str, Any], p: dict[str, Any]) -> str:
    text = (
        "- **Single ping:** per-request Python on one core. Of the worker's samples, uvicorn's "
        "send path (`RequestResponseCycle.send`, paid by the hello world too) is "
        f"{_share(p, 'RequestResponseCycle.send')}, reading the body (`json_body`, Starlette's "
        f"`Request.body`; the hello world never reads it) {_share(p, 'json_body')}, "
        f"authentication {_share(p, 'Deps.authenticate')} (mostly the warm-up's first "
        "verification of 8,192 tokens; then a cache hit), validation and the batcher "
        f"(`accept_ping`) {_share(p, 'accept_ping')}, the append (`TelemetryBatcher._flush`) "
        f"{_share(p, 'TelemetryBatcher._flush')}. Ingest is above the hello world because its "
        "ping route skips FastAPI's per-request dependency solving (`LeanRoute`, "
        f"ingest/lean_route.py; {_share(p, 'solve_dependencies')} of ingest's samples), which the "
        "hello world, written as a user would, pays on every request; the route is still "
        "documented in the OpenAPI schema and validates its own input."
    )
    tuned, hello = single.get("hello-gc-tuned"), single.get("hello")
    if tuned and hello:
        text += (
            " Ingest also starts with its GC tuned; the hello world serves "
            f"{fmt_number(hello['median'])} req/s with CPython's GC defaults and "
            f"{fmt_number(tuned['median'])} with ingest's settings."
        )
    return text
