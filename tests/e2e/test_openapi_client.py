"""A real client generator accepts the live OpenAPI document, and its client works.

openapi-python-client (pinned in pyproject.toml's openapi-generator group, in a venv of its own)
generates a package from a running platform's /openapi.json and must print no warning: it
reports the parts of a document it cannot turn into code (unsupported or invalid schemas,
parameters, responses) as warnings and leaves them out. Then a rider quotes, requests and reads
a ride through the generated functions, and each answer must parse into its typed model."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from ridepulse.auth import mint_token
from tests.support.api import DOWNTOWN, City, offset

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PACKAGE = "ridepulse_api_client"
# the generator runs ruff over what it wrote: a few seconds alone, more on a busy 2-core machine
GENERATE_TIMEOUT_S = 180
READ_TIMEOUT_S = 15


def _generator() -> Path:
    """The generator in its own venv beside this interpreter's (the Makefile's GENERATOR_VENV)."""
    path = Path(sys.prefix) / "openapi-generator" / "bin" / "openapi-python-client"
    assert path.exists(), (
        f"expected the client generator at {path}; `make .venv` installs pyproject.toml's "
        "openapi-generator group there"
    )
    return path


def _generate(document: bytes, workdir: Path) -> None:
    """Write `document` to `workdir` and generate PACKAGE next to it; fail on any warning."""
    spec = workdir / "openapi.json"
    spec.write_bytes(document)
    generator = _generator()
    # its post-hooks run `ruff` from PATH: without the venv's own it warns "ruff is not in PATH"
    env = {**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [
        str(generator),
        "generate",
        "--path",
        str(spec),
        "--output-path",
        str(workdir / PACKAGE),
        "--meta",
        "none",
        "--fail-on-warning",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=GENERATE_TIMEOUT_S, check=False
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0 and "warning" not in output.lower(), (
        f"expected openapi-python-client to generate without a warning; it exited "
        f"{result.returncode} and printed:\n{output}"
    )


@pytest.fixture
def generated(shared_city: City, tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    """The generated package's modules this test uses, importable for the test only."""
    response = shared_city.http.get("/openapi.json")
    assert response.status_code == 200, response.text
    _generate(response.content, tmp_path)
    # one module per operation, named for its operationId: none was dropped or renamed
    operations = {
        op["operationId"] for item in response.json()["paths"].values() for op in item.values()
    }
    modules = {m.stem for m in (tmp_path / PACKAGE / "api").glob("*/*.py") if m.stem != "__init__"}
    assert modules == operations, f"operations {sorted(operations)}, modules {sorted(modules)}"
    sys.path.insert(0, str(tmp_path))
    try:
        names = (
            "client",
            "models",
            "api.rides.quote",
            "api.rides.request_ride",
            "api.rides.get_ride",
        )
        yield {name: importlib.import_module(f"{PACKAGE}.{name}") for name in names}
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _answer(response: Any) -> str:
    return f"{response.status_code}: {response.content.decode(errors='replace')}"


def _read_ride(get_ride: ModuleType, client: Any, ride_id: str) -> Any:
    """GET the ride until it answers 200 (the 202 promises it is durable, so at once)."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        response = get_ride.sync_detailed(ride_id, client=client)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, f"GET /v1/rides/{ride_id}: {_answer(response)}"
            return response.parsed
        time.sleep(0.1)


def test_a_generated_client_quotes_requests_and_reads_back_a_ride(
    shared_city: City, generated: dict[str, ModuleType]
) -> None:
    models, get_ride = generated["models"], generated["api.rides.get_ride"]
    rider = f"openapi-client-{uuid.uuid4().hex[:8]}"
    pickup, dropoff = DOWNTOWN, offset(DOWNTOWN, -2_000, 500)
    client = generated["client"].AuthenticatedClient(
        base_url=shared_city.platform.api,
        token=mint_token(shared_city.secret, "rider", rider),
        timeout=httpx.Timeout(10),
    )
    with client:
        quoted = generated["api.rides.quote"].sync_detailed(
            client=client,
            pickup_lat=pickup[0],
            pickup_lon=pickup[1],
            dropoff_lat=dropoff[0],
            dropoff_lon=dropoff[1],
        )
        quote = quoted.parsed
        assert quoted.status_code == 200 and isinstance(quote, models.QuoteOut), _answer(quoted)
        assert quote.quote_id and quote.fare > 0 and quote.distance_m > 0, quote

        body = models.RideRequestIn(
            pickup=models.LatLonIn(lat=pickup[0], lon=pickup[1]),
            dropoff=models.LatLonIn(lat=dropoff[0], lon=dropoff[1]),
            quote_id=quote.quote_id,
        )
        made = generated["api.rides.request_ride"].sync_detailed(
            client=client, body=body, idempotency_key=f"{rider}-ride"
        )
        accepted = made.parsed
        assert made.status_code == 202 and isinstance(accepted, models.RideAccepted), _answer(made)
        assert accepted.ride_id, accepted

        ride = _read_ride(get_ride, client, accepted.ride_id)
    assert isinstance(ride, models.RideOut), f"expected a RideOut, got {ride!r}"
    assert ride.ride_id == accepted.ride_id and ride.rider_id == rider, ride
    assert isinstance(ride.status, models.RideOutStatus), ride
    assert ride.quote_id == quote.quote_id and ride.fare == quote.fare, (quote, ride)
    assert (ride.pickup.lat, ride.pickup.lon) == pickup, ride
