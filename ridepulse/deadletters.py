"""Dead letters an operator can use: list them, and replay one or all to the stream they came from.

A replay appends the original fields again, byte for byte (a new entry id, the same event `id`),
to the original stream, then deletes the dead letter (XDEL): the dead-letter stream holds only
what still needs a decision. The two writes are not one transaction (on a cluster they live on
different shards), so a crash between them leaves the dead letter in place and a second replay
appends the event again; that is safe because every handler dedupes on the event id (DESIGN §6).
The new entry reaches every group of the stream, not only the one that gave up on it: groups
that handled the event before see it again and skip it by its id.

The entry's fields are read as ridepulse/bus/deadletter.py writes them; fields added later
(another helper may add some) are kept in `extra` and shown as they are."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from ridepulse.bus.deadletter import DEAD_LETTER_FIELDS, ORIGINAL_FIELD_PREFIX, verbatim_original
from ridepulse.bus.trimming import format_id, parse_id
from ridepulse.errors import InvalidInput, NotFound
from ridepulse.keys import GlobalKeys

_KNOWN = DEAD_LETTER_FIELDS
PAGE = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # the dead-letter entry id: what `replay` takes
    stream: str
    group: str
    consumer: str
    entry_id: str  # the original entry's id in `stream`
    event_id: str
    type: str
    reason: str
    deliveries: int
    time_ms: int
    original: dict[str, str]  # readable: bytes that are not UTF-8 shown as U+FFFD
    extra: dict[str, str] = field(default_factory=dict)
    verbatim: dict[bytes, bytes] = field(default_factory=dict)  # what a replay appends

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "entry_id": self.entry_id,
            "event_id": self.event_id,
            "type": self.type,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "time": self.time_ms,
            "original": self.original,
            **({"extra": self.extra} if self.extra else {}),
        }


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def parse_dead_letter(
    entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]
) -> DeadLetter:
    """One dead-letter entry, tolerant of missing and added fields."""
    raw = {_bytes(k): _bytes(v) for k, v in fields.items()}
    f = {_text(k): _text(v) for k, v in raw.items() if not k.startswith(ORIGINAL_FIELD_PREFIX)}
    try:
        original = orjson.loads(f.get("original", "{}"))
    except orjson.JSONDecodeError:
        original = {}
    if not isinstance(original, dict):
        original = {}
    return DeadLetter(
        id=_text(entry_id),
        stream=f.get("stream", ""),
        group=f.get("group", ""),
        consumer=f.get("consumer", ""),
        entry_id=f.get("entry_id", ""),
        event_id=f.get("event_id", ""),
        type=f.get("type", ""),
        reason=f.get("reason", ""),
        deliveries=_int(f.get("deliveries", "0")),
        time_ms=_int(f.get("time", "0")),
        original={str(k): str(v) for k, v in original.items()},
        extra={k: v for k, v in f.items() if k not in _KNOWN},
        verbatim=verbatim_original(raw),
    )


def iter_dead_letters(client: redis.Redis, prefix: str) -> Iterator[DeadLetter]:
    """Every dead letter, oldest first, read a page at a time."""
    key = GlobalKeys(prefix).dead_letters
    start = "-"
    while True:
        page: Any = client.xrange(key, min=start, count=PAGE)
        for entry_id, fields in page:
            yield parse_dead_letter(entry_id, fields)
        if len(page) < PAGE:
            return
        start = "(" + _text(page[-1][0])


def list_dead_letters(
    client: redis.Redis, prefix: str, limit: int | None = None
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for letter in iter_dead_letters(client, prefix):
        if limit is not None and len(letters) >= limit:
            break
        letters.append(letter)
    return letters


def _entry_id(text: str) -> bool:
    """Whether `text` is an entry id written as the listing writes one (`ms-seq`, each part a
    64-bit number): the stream parser's reading of it gives it back unchanged."""
    try:
        ms, seq = parse_id(text)
    except ValueError:
        return False
    return format_id((ms, seq)) == text and max(ms, seq) < 2**64


def get_dead_letter(client: redis.Redis, prefix: str, dead_letter_id: str) -> DeadLetter:
    if not _entry_id(dead_letter_id):  # the server would answer with a ResponseError
        raise InvalidInput(
            f"{dead_letter_id!r} is not a dead letter id: the listing's first column, "
            "like 1765432109876-0",
            field="id",
        )
    found: Any = client.xrange(GlobalKeys(prefix).dead_letters, dead_letter_id, dead_letter_id)
    if not found:
        raise NotFound(f"no dead letter {dead_letter_id}", field="id")
    return parse_dead_letter(found[0][0], found[0][1])


def replay(client: redis.Redis, prefix: str, letter: DeadLetter) -> str:
    """Append the original event to its stream, then delete the dead letter; returns the new
    entry id. Refuses a letter naming a stream outside this deployment's prefix or carrying
    no original fields (nothing to replay)."""
    if not letter.stream.startswith(f"{prefix}:"):
        raise InvalidInput(f"dead letter {letter.id} names stream {letter.stream!r}", field="id")
    # A letter written before the verbatim fields were kept replays its readable `original`, as it
    # always did (bytes that were not UTF-8 arrived there already replaced by U+FFFD).
    fields = letter.verbatim or letter.original
    if not fields:
        raise InvalidInput(f"dead letter {letter.id} has no original fields", field="id")
    new_id: Any = client.xadd(letter.stream, fields)  # type: ignore[arg-type]
    client.xdel(GlobalKeys(prefix).dead_letters, letter.id)
    return _text(new_id)


def replay_all(
    client: redis.Redis, prefix: str
) -> tuple[list[tuple[DeadLetter, str]], list[tuple[DeadLetter, str]]]:
    """Replay every dead letter present now (read first, so replays never chase their tail).
    Returns (replayed with their new entry ids, refused with the reason); a refused letter
    stays in the dead-letter stream."""
    replayed, refused = [], []
    for letter in list(iter_dead_letters(client, prefix)):
        try:
            replayed.append((letter, replay(client, prefix, letter)))
        except InvalidInput as exc:
            refused.append((letter, exc.detail))
    return replayed, refused


def render(letters: list[DeadLetter]) -> str:
    """The human listing: one line per dead letter."""
    if not letters:
        return "no dead letters"
    lines = [f"{'id':<17} {'deliveries':>10}  stream / group  event  reason"]
    for d in letters:
        event = f"{d.type or '?'} {d.event_id or '?'}"
        reason = d.reason.splitlines()[0] if d.reason else ""
        lines.append(f"{d.id:<17} {d.deliveries:>10}  {d.stream} / {d.group}  {event}  {reason}")
    return "\n".join(lines)
