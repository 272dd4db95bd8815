"""`ridepulse events …`: export the event contracts, so docs and other-language clients are
generated from the code rather than written beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ridepulse.cli_checks import fail
from ridepulse.contracts.asyncapi import write_asyncapi
from ridepulse.contracts.registry import json_schemas
from ridepulse.markets import load_markets

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic emits

events_app = typer.Typer(help="Event contracts: AsyncAPI document and JSON Schemas.")


@events_app.command("asyncapi")
def asyncapi(
    out: Annotated[Path, typer.Option("--out", help="YAML file to write")] = Path(
        "docs/asyncapi.yaml"
    ),
    markets: Annotated[
        str,
        typer.Option(
            "--markets",
            help="the markets whose keys the channels list: `all` (every built-in market) or "
            "comma-separated ids, as RIDEPULSE_MARKETS",
        ),
    ] = "all",
) -> None:
    """Write the AsyncAPI 3.0 document of every stream, message and operation."""
    try:
        chosen = [m.id for m in load_markets(only=markets).markets]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--markets") from None
    try:
        write_asyncapi(out, chosen)
    except OSError as exc:  # a directory, a missing parent, no permission: one line
        fail(f"cannot write {out}: {exc.strerror or exc} (--out)")
    typer.echo(f"wrote {out}")


@events_app.command("schemas")
def schemas(
    out: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path(
        "docs/schemas"
    ),
) -> None:
    """Write one JSON Schema per event type and version, as `<type>.v<N>.json`."""
    written = json_schemas()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in written.items():
            document = {"$schema": JSON_SCHEMA_DIALECT, **schema}
            text = json.dumps(document, indent=2, sort_keys=True) + "\n"
            (out / f"{name}.json").write_text(text, encoding="utf-8")
    except OSError as exc:  # a file where the directory goes, no permission: one line
        fail(f"cannot write into {out}: {exc.strerror or exc} (--out: a directory)")
    typer.echo(f"wrote {len(written)} schemas to {out}")
