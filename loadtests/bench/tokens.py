"""Tokens for a contender, minted by that contender's own `ridepulse.auth`.

Releases disagree on the claims (v0.1.0 rejects the audience claim later releases require), so
the harness never mints with its own code for someone else's server: it asks the contender's
code, in one subprocess per stack, with the contender's PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import orjson

_MINT = """
import sys, orjson
from ridepulse.auth import mint_token
secret, wanted = orjson.loads(sys.stdin.buffer.read())
tokens = [mint_token(secret, role, subject) for role, subject in wanted]
sys.stdout.buffer.write(orjson.dumps(tokens))
"""


def mint_tokens(
    secret: str, wanted: Sequence[tuple[str, str]], env: dict[str, str] | None = None
) -> list[str]:
    """One API token per (role, subject), in order, from the code `env` selects."""
    done = subprocess.run(
        [sys.executable, "-P", "-c", _MINT],  # -P: the cwd's ridepulse must not shadow env's
        input=orjson.dumps([secret, list(wanted)]),
        env={**os.environ, **(env or {})},
        capture_output=True,
        check=True,
        timeout=120,
    )
    tokens: list[str] = orjson.loads(done.stdout)
    return tokens
