"""The bench mints each contender's tokens with that contender's own code (bench/tokens.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench.tokens import mint_tokens
from ridepulse.auth import verify_token

REPO = Path(__file__).resolve().parents[2]


def test_tokens_of_the_current_tree_verify_in_order() -> None:
    secret = "s" * 48
    tokens = mint_tokens(secret, [("fleet", "f-1"), ("rider", "r-7")])
    claims = [verify_token(secret, t) for t in tokens]
    assert [(c.role, c.subject) for c in claims] == [("fleet", "f-1"), ("rider", "r-7")]


def test_the_code_on_pythonpath_mints_even_from_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release's tree first on PYTHONPATH decides, not the repo the harness runs in (the
    cwd would otherwise shadow it: v0.1.0 then got tokens it rejects)."""
    release = tmp_path / "release" / "ridepulse"
    release.mkdir(parents=True)
    (release / "__init__.py").write_text("")
    (release / "auth.py").write_text(
        "def mint_token(secret, role, subject):\n    return f'release:{role}:{subject}'\n"
    )
    monkeypatch.chdir(REPO)
    tokens = mint_tokens("x", [("ops", "o")], {"PYTHONPATH": str(release.parent)})
    assert tokens == ["release:ops:o"]
