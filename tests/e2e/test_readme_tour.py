"""The README's five-minute tour, run as written: its bash block, taken from README.md, against a
fresh platform. A user's first commands are a promise; the day one of them stops working (a
renamed route, a status that changed, a token the CLI no longer mints) this test fails.

The block runs in one bash with `set -euo pipefail`. The only changes are the API's port and
one wait put in: a person types the next line after matching has offered the ride, so the shell
waits for the offer between the ride request and the driver's look at it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import running_city
from tests.support.api import City

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SECTION = "## A five-minute tour"
SPLIT_BEFORE = "# the nearest driver is offered the ride"


def tour_script() -> tuple[str, str]:
    """The tour's bash block, split where the offer is waited for."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(SECTION, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the tour's bash block is gone from README.md"
    first, found, second = block.group(1).partition(SPLIT_BEFORE)
    assert found, f"the tour no longer has the line {SPLIT_BEFORE!r} to wait before"
    return first, found + second


@pytest.fixture
def tour_city(tmp_path: Path) -> Iterator[City]:
    """No simulation (the tour's d-42 is the only driver, so the offer is its), and offers
    that wait for a person: the e2e suite's 2 s would expire while the next line runs."""
    with running_city(
        tmp_path / "city", RIDEPULSE_OFFER_TIMEOUT_S="60", RIDEPULSE_RIDE_DEADLINE_S="120"
    ) as city:
        yield city


# Between the halves, in the same shell: until matching has offered the ride (10 s at most).
WAIT_FOR_THE_OFFER = """
for _ in $(seq 100); do
  curl -s "$API/v1/rides/$RIDE" -H "Authorization: Bearer $RIDER" | grep -q '"status":"offered"' \\
    && break
  sleep 0.1
done
echo "--- offered"
"""


def run_tour(city: City) -> tuple[list[str], list[str]]:
    """What the tour printed before and after the offer, run in one bash (it must exit 0)."""
    first, second = tour_script()
    api = f"http://127.0.0.1:{city.platform.api_port}"
    first = first.replace("API=http://127.0.0.1:8000", f"API={api}")
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + first + WAIT_FOR_THE_OFFER + second],
        cwd=REPO,  # `source .venv/bin/activate`, as a user in the checkout
        # the tokens and `ridepulse status` of this city, not of the checkout's .ridepulse
        env={**os.environ, "RIDEPULSE_DATA_DIR": str(city.platform.data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    before, found, after = done.stdout.partition("--- offered\n")
    assert found, done.stdout
    return before.splitlines(), after.splitlines()


def json_answers(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON objects the curls printed, in order (`curl -s` adds no newline, so an answer
    may share its line with the next command's output), whatever text lies between them."""
    text, answers, at = "\n".join(lines), [], 0
    decoder = json.JSONDecoder()
    while (start := text.find("{", at)) >= 0:
        try:
            answer, at = decoder.raw_decode(text, start)
        except json.JSONDecodeError:  # a brace of other text: `rp:{sf}:rides` in the status
            at = start + 1
            continue
        answers.append(answer)
    return answers


def test_the_readme_tour_runs_as_written(tour_city: City) -> None:
    before, after = run_tour(tour_city)
    quote = json_answers(before)[-1]  # printed last: the ride request's answer went to python3
    assert quote["fare"] > 0 and quote["quote_id"], quote
    looked, *steps, final = json_answers(after)
    ride_id = final["ride_id"]
    assert ride_id.startswith("sf-"), final
    assert looked["driver_id"] == "d-42" and looked["offer"]["ride_id"] == ride_id, looked
    assert [step["status"] for step in steps] == [
        "matched",
        "driver_arrived",
        "started",
        "completed",
    ]
    assert final["status"] == "completed" and final["fare"] > 0, final
    assert [t["status"] for t in final["timeline"]][-1] == "completed", final
    assert after[-1] == "healthy", after[-3:]  # `ridepulse status`; it exits 1 if not
