"""A streaming reply's snapshot in Redis: the text so far, its sequence number, its state.

The runner appends each published batch (APPEND, so writes stay linear) and bumps `seq`
*before or atomically with* publishing that batch; a socket that joins the group and then
reads the snapshot therefore misses nothing and can drop every update with seq <= the
snapshot's. `write_many` does this for all of a worker's replies in one round trip, and
when it is given the Redis pub/sub channel of the reply's group (the pub/sub channel layer
on this same Redis, see `chatsite.channels_redis_adapter`), publishes the update in the
same script: snapshot and frame go out together or not at all. A heartbeat key, refreshed
every second by the runner's worker, tells the sweepers of `recovery` which `streaming`
rows have lost their worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatsite.redis import get_async_redis, get_redis

STREAMING = "streaming"
DONE = "done"
# How long a snapshot outlives activity: a stalled runner's snapshot must not vanish
# while it waits for a slow upstream, so it is refreshed with the heartbeat too.
TTL = 600
DONE_TTL = 120
# The heartbeat, refreshed every second, outlives a stall of the runner's loop of a few
# seconds; a worker that died is noticed soon after it lapses (see `recovery`).
HEARTBEAT_TTL = 4


def _text_key(reply_id: int) -> str:
    return f"chat:reply:{reply_id}:text"


def _meta_key(reply_id: int) -> str:
    return f"chat:reply:{reply_id}:meta"


def _beat_key(reply_id: int) -> str:
    return f"chat:reply:{reply_id}:beat"


@dataclass(frozen=True)
class Snapshot:
    text: str
    seq: int
    status: str

    @property
    def is_streaming(self) -> bool:
        return self.status == STREAMING


async def start(reply_id: int, channel: str = "", payload: bytes = b"") -> None:
    """An empty snapshot at seq 0, and the first heartbeat; with a pub/sub `channel`, the
    turn's first frame (`payload`) published in the same step."""
    pipe = get_async_redis().pipeline(transaction=True)
    pipe.set(_text_key(reply_id), "", ex=TTL)
    pipe.hset(_meta_key(reply_id), mapping={"seq": 0, "status": STREAMING})
    pipe.expire(_meta_key(reply_id), TTL)
    pipe.set(_beat_key(reply_id), "1", ex=HEARTBEAT_TTL)
    if channel:
        pipe.publish(channel, payload)
    await pipe.execute()


# KEYS: text, meta, beat. ARGV: offset (bytes of text saved before `delta`), delta, seq,
# done ("1" or ""), pub/sub channel ("" for none), payload.
# Idempotent: only the part of `delta` past what the text already holds is appended, so a
# batch retried after an unclear failure is never written twice.
_WRITE = f"""
local have = redis.call('STRLEN', KEYS[1])
local offset = tonumber(ARGV[1])
if have < offset then
  return redis.error_reply('HOLE snapshot text shorter than expected')
end
local delta = ARGV[2]
if have < offset + #delta then
  redis.call('APPEND', KEYS[1], string.sub(delta, have - offset + 1))
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'status', '{DONE}')
  redis.call('EXPIRE', KEYS[1], {DONE_TTL})
  redis.call('EXPIRE', KEYS[2], {DONE_TTL})
  redis.call('DEL', KEYS[3])
else
  redis.call('HSET', KEYS[2], 'seq', ARGV[3])
end
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 1
"""


@dataclass
class Write:
    """One reply's batch: text to add after `offset` bytes, its seq, and maybe its frame."""

    reply_id: int
    offset: int
    delta: str
    seq: int
    done: bool = False
    channel: str = ""  # a Redis pub/sub channel to publish `payload` on, in the same step
    payload: bytes = b""


async def write_many(writes: Sequence[Write]) -> list[BaseException | None]:
    """Apply the writes in one round trip; per write, None or the error it met.

    Each write is atomic (one script); a connection failure fails them all.
    """
    if not writes:
        return []
    pipe = get_async_redis().pipeline(transaction=False)
    for w in writes:
        pipe.execute_command(
            "EVAL", _WRITE, 3,
            _text_key(w.reply_id), _meta_key(w.reply_id), _beat_key(w.reply_id),
            w.offset, w.delta, w.seq, "1" if w.done else "", w.channel, w.payload,
        )  # fmt: skip
    try:
        results = await pipe.execute(raise_on_error=False)
    except Exception as exc:
        return [exc] * len(writes)
    return [r if isinstance(r, BaseException) else None for r in results]


async def append(reply_id: int, text: str, seq: int, offset: int = 0) -> None:
    """Add a published batch (after `offset` bytes of text) and its sequence number."""
    (error,) = await write_many([Write(reply_id, offset, text, seq)])
    if error is not None:
        raise error


async def finish(reply_id: int, seq: int) -> None:
    """The reply is saved in the database; readers go there from now on."""
    pipe = get_async_redis().pipeline(transaction=True)
    pipe.hset(_meta_key(reply_id), mapping={"seq": seq, "status": DONE})
    pipe.expire(_meta_key(reply_id), DONE_TTL)
    pipe.expire(_text_key(reply_id), DONE_TTL)
    pipe.delete(_beat_key(reply_id))
    await pipe.execute()


def is_hole(error: BaseException) -> bool:
    """The write failed because the snapshot lost text: it must be written whole again."""
    return "HOLE" in str(error)


def utf8_length(text: str) -> int:
    """Bytes `text` takes in the snapshot (offsets in `Write` count bytes)."""
    return len(text) if text.isascii() else len(text.encode())


# KEYS: text, meta, beat of each reply in turn. A reply whose snapshot is done keeps its
# short expiry: the keeper may have listed it just before its final write.
_BEAT = f"""
for i = 1, #KEYS, 3 do
  if redis.call('HGET', KEYS[i + 1], 'status') ~= '{DONE}' then
    redis.call('SET', KEYS[i + 2], '1', 'EX', {HEARTBEAT_TTL})
    redis.call('EXPIRE', KEYS[i], {TTL})
    redis.call('EXPIRE', KEYS[i + 1], {TTL})
  end
end
return 1
"""


async def beat_many(reply_ids: list[int]) -> None:
    """These replies' runners are alive; keep their snapshots too (one round trip)."""
    if not reply_ids:
        return
    keys = [
        key
        for reply_id in reply_ids
        for key in (_text_key(reply_id), _meta_key(reply_id), _beat_key(reply_id))
    ]
    await get_async_redis().eval(_BEAT, len(keys), *keys)


def _parse(text: str | None, meta: dict[str, str]) -> Snapshot | None:
    if not meta or "seq" not in meta:
        return None
    return Snapshot(text=text or "", seq=int(meta["seq"]), status=meta.get("status", STREAMING))


async def read(reply_id: int) -> Snapshot | None:
    """The snapshot, text and seq read together; None when there is none."""
    pipe = get_async_redis().pipeline(transaction=True)
    pipe.get(_text_key(reply_id))
    pipe.hgetall(_meta_key(reply_id))
    text, meta = await pipe.execute()
    return _parse(text, meta)


def read_sync(reply_id: int) -> Snapshot | None:
    pipe = get_redis().pipeline(transaction=True)
    pipe.get(_text_key(reply_id))
    pipe.hgetall(_meta_key(reply_id))
    text, meta = pipe.execute()
    return _parse(text, meta)


async def is_alive_async(reply_id: int) -> bool:
    """True while the reply's runner refreshes its heartbeat."""
    return bool(await get_async_redis().exists(_beat_key(reply_id)))


async def alive_many(reply_ids: list[int]) -> list[bool]:
    """For each reply, whether its runner refreshes its heartbeat (one round trip)."""
    if not reply_ids:
        return []
    pipe = get_async_redis().pipeline(transaction=False)
    for reply_id in reply_ids:
        pipe.exists(_beat_key(reply_id))
    return [bool(found) for found in await pipe.execute()]


def is_alive(reply_id: int) -> bool:
    return bool(get_redis().exists(_beat_key(reply_id)))
