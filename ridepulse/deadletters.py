"""Dead letters an operator can use: list them, and replay one or all to the stream they came from.

A replay appends the original fields again, byte for byte (a new entry id, the same event `id`),
to the original stream, then deletes the dead letter (XDEL): the dead-letter stream holds only
what still needs a decision. The two writes are not one transaction (on a cluster they live on
different shards), so a crash between them leaves the dead letter in place and a second replay
appends the event again; that is safe because every handler dedupes on the event id (DESIGN §6).
The new entry reaches every group of the stream, not only the one that gave up on it: groups
that handled the event before see it again and skip it by its id. So one original entry is
appended once, however many groups wrote a letter for it, and all those letters (its siblings,
same stream and entry id) are deleted with it: replaying each would append it once per group.

An entry the contracts still cannot decode is refused unless forced: every group would read it
again and dead-letter it at once, one new letter per group. So is a letter naming a stream no
consumer group reads (one that does not exist, is not a stream, or has no group: the dead
letters themselves, `rp:health`): the platform reads only streams with groups, and an entry
appended elsewhere would go nowhere, or create a stream of its own.

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
from ridepulse.contracts.registry import decode
from ridepulse.errors import InvalidEvent, InvalidInput, NotFound
from ridepulse.keys import GlobalKeys
from ridepulse.replies import text, time_ms

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


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: DeadLetter  # the letter whose fields were appended
    new_id: str  # the new entry's id in letter.stream
    siblings: list[str]  # the same entry's other letters, deleted with it


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
    f = {text(k): text(v) for k, v in raw.items() if not k.startswith(ORIGINAL_FIELD_PREFIX)}
    try:
        original = orjson.loads(f.get("original", "{}"))
    except orjson.JSONDecodeError:
        original = {}
    if not isinstance(original, dict):
        original = {}
    return DeadLetter(
        id=text(entry_id),
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
        start = "(" + text(page[-1][0])


def list_dead_letters(
    client: redis.Redis, prefix: str, limit: int | None = None
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for letter in iter_dead_letters(client, prefix):
        if limit is not None and len(letters) >= limit:
            break
        letters.append(letter)
    return letters


def _entry_id(written: str) -> bool:
    """Whether `written` is an entry id written as the listing writes one (`ms-seq`, each part a
    64-bit number): the stream parser's reading of it gives it back unchanged."""
    try:
        ms, seq = parse_id(written)
    except ValueError:
        return False
    return format_id((ms, seq)) == written and max(ms, seq) < 2**64


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


def replay_reason(letter: DeadLetter, now_ms: int) -> str | None:
    """Why the letter's entry would be dead-lettered again at once (the contracts cannot decode
    it, or its pings are stamped too far past `now_ms`, the time a replay appends it at), or
    None. Replaying such an entry only multiplies it: every group of its stream reads it again
    and each writes a letter of its own."""
    try:
        decode(letter_fields(letter), appended_ms=now_ms)
    except InvalidEvent as exc:
        return exc.detail
    except Exception as exc:  # bytes that are not UTF-8, or anything else the decoder meets
        return f"undecodable: {type(exc).__name__}: {exc}"
    return None


def letter_fields(letter: DeadLetter) -> dict[bytes, bytes]:
    """What a replay appends: the verbatim fields; for a letter written before they were kept,
    its readable `original`, as it always did (bytes that were not UTF-8 arrived there already
    replaced by U+FFFD)."""
    return letter.verbatim or {k.encode(): v.encode() for k, v in letter.original.items()}


def _sibling_key(letter: DeadLetter) -> tuple[str, str]:
    """Letters of one original entry share it: each group that gave up on the entry wrote one.
    A letter with no entry id has no siblings."""
    return (letter.stream, letter.entry_id) if letter.entry_id else ("", letter.id)


def siblings_of(client: redis.Redis, prefix: str, letter: DeadLetter) -> list[DeadLetter]:
    """The other letters of the same original entry (other groups', or the same group's after an
    earlier replay), oldest first."""
    key = _sibling_key(letter)
    return [
        other
        for other in iter_dead_letters(client, prefix)
        if other.id != letter.id and _sibling_key(other) == key
    ]


def replay(
    client: redis.Redis,
    prefix: str,
    letter: DeadLetter,
    siblings: list[DeadLetter] | None = None,
    *,
    force: bool = False,
) -> Replayed:
    """Append the original event to its stream once, then delete the dead letter and its
    siblings (`siblings`, or looked up): every group of the stream reads the new entry, so the
    letters the other groups wrote for it are settled by the same append.

    Refuses (InvalidInput) a letter naming a stream outside this deployment's prefix or one no
    consumer group reads, carrying no original fields (nothing to replay), or, unless `force`,
    one whose entry the contracts still cannot decode (it would come straight back, once per
    group)."""
    if not letter.stream.startswith(f"{prefix}:"):
        raise InvalidInput(f"dead letter {letter.id} names stream {letter.stream!r}", field="id")
    if (why_not := _unread(client, prefix, letter.stream)) is not None:
        raise InvalidInput(
            f"dead letter {letter.id} names stream {letter.stream!r}, {why_not}: no consumer "
            "group would read the entry",
            field="id",
        )
    fields = letter_fields(letter)
    if not fields:
        raise InvalidInput(f"dead letter {letter.id} has no original fields", field="id")
    if not force and (why := replay_reason(letter, time_ms(client.time()))) is not None:
        raise InvalidInput(
            f"dead letter {letter.id}: its entry still cannot be decoded ({why}); every group "
            "would dead-letter it again. Fix the producer, or replay it anyway with --force",
            field="id",
        )
    if siblings is None:
        siblings = siblings_of(client, prefix, letter)
    new_id: Any = client.xadd(letter.stream, fields)  # type: ignore[arg-type]
    settled = [letter.id, *(s.id for s in siblings)]
    client.xdel(GlobalKeys(prefix).dead_letters, *settled)
    return Replayed(letter, text(new_id), [s.id for s in siblings])


def _unread(client: redis.Redis, prefix: str, stream: str) -> str | None:
    """Why no consumer group reads `stream` (missing, not a stream, no group), or None."""
    if stream == GlobalKeys(prefix).dead_letters:
        return "the dead letters themselves"
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError as exc:  # "no such key", WRONGTYPE
        return "which does not exist" if "no such key" in str(exc) else f"not a stream ({exc})"
    return None if groups else "which has no consumer group"


def replay_all(
    client: redis.Redis, prefix: str, *, force: bool = False
) -> tuple[list[Replayed], list[tuple[DeadLetter, str]]]:
    """Replay every original entry with a dead letter present now (read first, so replays never
    chase their tail): each entry is appended once, whichever groups wrote letters for it.
    Returns (the replays, the refused letters with the reason); a refused letter stays in the
    dead-letter stream, and so do its siblings, and the letters after it are still replayed."""
    by_entry: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in iter_dead_letters(client, prefix):
        by_entry.setdefault(_sibling_key(letter), []).append(letter)
    replayed: list[Replayed] = []
    refused: list[tuple[DeadLetter, str]] = []
    for letters in by_entry.values():
        # the letter that carries the entry: an empty one (its entry was deleted before it was
        # claimed) is settled by a sibling that kept the fields
        first = next((d for d in letters if d.verbatim or d.original), letters[0])
        try:
            replayed.append(
                replay(client, prefix, first, [d for d in letters if d is not first], force=force)
            )
        except InvalidInput as exc:
            refused.extend((letter, exc.detail) for letter in letters)
        except redis.ResponseError as exc:  # the server refused this letter's writes (WRONGTYPE)
            refused.extend((letter, f"Redis refused the replay: {exc}") for letter in letters)
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
