"""A streaming reply's snapshot in Redis: the text so far, its sequence number, its state.

The runner appends each published batch (APPEND, so writes stay linear) and bumps `seq`
in one transaction *before* publishing that batch; a socket that joins the group and then
reads the snapshot therefore misses nothing and can drop every update with seq <= the
snapshot's. A heartbeat key, refreshed every second by the runner, tells the start-up
sweep which `streaming` rows have lost their worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from usage.redis import get_async_redis, get_redis

STREAMING = "streaming"
DONE = "done"
# How long a snapshot outlives activity: a stalled runner's snapshot must not vanish
# while it waits for a slow upstream, so it is refreshed with the heartbeat too.
TTL = 600
DONE_TTL = 120
HEARTBEAT_TTL = 10


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


async def start(reply_id: int) -> None:
    """An empty snapshot at seq 0, and the first heartbeat."""
    pipe = get_async_redis().pipeline(transaction=True)
    pipe.set(_text_key(reply_id), "", ex=TTL)
    pipe.hset(_meta_key(reply_id), mapping={"seq": 0, "status": STREAMING})
    pipe.expire(_meta_key(reply_id), TTL)
    pipe.set(_beat_key(reply_id), "1", ex=HEARTBEAT_TTL)
    await pipe.execute()


async def append(reply_id: int, text: str, seq: int) -> None:
    """Add a published batch and its sequence number, atomically."""
    pipe = get_async_redis().pipeline(transaction=True)
    if text:
        pipe.append(_text_key(reply_id), text)
    pipe.hset(_meta_key(reply_id), "seq", seq)
    await pipe.execute()


async def finish(reply_id: int, seq: int) -> None:
    """The reply is saved in the database; readers go there from now on."""
    pipe = get_async_redis().pipeline(transaction=True)
    pipe.hset(_meta_key(reply_id), mapping={"seq": seq, "status": DONE})
    pipe.expire(_meta_key(reply_id), DONE_TTL)
    pipe.expire(_text_key(reply_id), DONE_TTL)
    pipe.delete(_beat_key(reply_id))
    await pipe.execute()


async def beat_many(reply_ids: list[int]) -> None:
    """These replies' runners are alive; keep their snapshots too (one round trip)."""
    if not reply_ids:
        return
    pipe = get_async_redis().pipeline(transaction=False)
    for reply_id in reply_ids:
        pipe.set(_beat_key(reply_id), "1", ex=HEARTBEAT_TTL)
        pipe.expire(_text_key(reply_id), TTL)
        pipe.expire(_meta_key(reply_id), TTL)
    await pipe.execute()


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


def is_alive(reply_id: int) -> bool:
    return bool(get_redis().exists(_beat_key(reply_id)))
