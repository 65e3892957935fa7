"""Usage pages at a million ledger rows, and what admission and charging cost per request.

Run from the repository root: `.venv/bin/python bench/bench_usage.py` (`--help` for sizes).
It measures a private SQLite, then, when DATABASE_URL names a PostgreSQL server, a private
database created on that server for the run (and dropped after it); each in a process of
its own. In each:

  1. generate the ledger: `--rows` generations (default 1,000,000) over `--days` days by
     `--people` people (a few heavy users, many light ones), browser and API keys, several
     models, every status, times to first token; then build the rollups from it the way
     the migration does (`usage.rollups.rebuild`);
  2. page server time: the console's usage page for the last 30 days (split by model,
     person, group and API key) and the Usage page of the person with the most
     generations, each rendered through Django's full request handling (middleware,
     session, view, template) by the test client, `--repeat` times after a warm-up;
  3. the meter: `admit()` then `charge()` (one ledger row and its rollup) against the same
     database and Redis, alternating a person with no limits configured and a person
     with a daily, monthly, per-minute and concurrency limit of their own, a group's
     limits and a key with its own daily budget; p50 of each and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import ROOT, quiet_collector, set_up_django, stop

MODELS = [  # name, weight, typical completion tokens
    ("llama3.2:latest", 30, 300),
    ("qwen3:8b", 20, 600),
    ("gpt-4o-mini", 15, 250),
    ("gpt-4o", 10, 400),
    ("mistral-small", 10, 350),
    ("deepseek-r1:14b", 8, 1500),
    ("gemma3:12b", 5, 400),
    ("phi4", 2, 200),
]
STATUSES = [("ok", 90), ("stopped", 5), ("error", 3), ("interrupted", 2)]
COLUMNS = [
    "user_id", "api_key_id", "door", "model", "connection", "prompt_tokens",
    "completion_tokens", "usage_source", "status", "error", "started_at", "duration_ms",
    "ttft_ms",
]  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


# -- the world -------------------------------------------------------------------------


def make_people(count: int) -> tuple[list[int], dict[int, list[int | None]]]:
    """People (every fifth an admin), in groups of ten; half of them with one or two keys."""
    from django.contrib.auth.models import Group

    from accounts.models import ApiKey, User

    groups = [Group.objects.create(name=f"team-{n}") for n in range((count + 9) // 10)]
    users, keys = [], {}
    for n in range(count):
        user = User.objects.create(
            username=f"person{n:04d}", role="admin" if n % 5 == 0 else "member"
        )
        user.groups.add(groups[n // 10])
        own = [ApiKey.issue(user, f"key {k}")[0].pk for k in range(n % 2 + 1)] if n % 2 else []
        users.append(user.pk)
        keys[user.pk] = own
    return users, keys


def ledger_rows(rows: int, users: list[int], keys: dict[int, list[int]], days: int):  # type: ignore[no-untyped-def]
    """`rows` ledger rows as tuples in `COLUMNS` order, oldest first."""
    from django.db import connection

    rng = random.Random(9)
    weights = [1 / (rank + 1) for rank in range(len(users))]  # Zipf: a few heavy users
    people = rng.choices(users, weights, k=rows)
    models = rng.choices(MODELS, [weight for _, weight, _ in MODELS], k=rows)
    statuses = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES], k=rows)
    start = datetime.now(UTC) - timedelta(days=days)
    step = days * 86400 / rows
    adapt = connection.ops.adapt_datetimefield_value
    for n in range(rows):
        user, (model, _, typical), status = people[n], models[n], statuses[n]
        own = keys[user]
        key = rng.choice(own) if own and rng.random() < 0.5 else None
        completion = int(rng.expovariate(1 / typical))
        ttft = None if status == "error" else int(rng.lognormvariate(5.7, 0.6))
        started_at = start + timedelta(seconds=n * step)
        yield (
            user, key, "api" if key else "web", model, "local", rng.randint(20, 4000),
            completion if status != "error" else 0, "upstream", status,
            "upstream failed" if status == "error" else "", adapt(started_at),
            (ttft or 0) + completion * 20, ttft,
        )  # fmt: skip


def insert_ledger(rows, batch: int = 20000) -> None:  # type: ignore[no-untyped-def]
    """Write ledger rows straight to the table (COPY on PostgreSQL)."""
    from django.db import connection, transaction

    from usage.models import Generation

    table = Generation._meta.db_table
    names = ", ".join(COLUMNS)
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(COLUMNS))
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == batch:
            _insert(table, names, marks, chunk)
            chunk = []
    if chunk:
        _insert(table, names, marks, chunk)


def _insert(table: str, names: str, marks: str, chunk: list[tuple]) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", chunk)


# -- pages -----------------------------------------------------------------------------


def time_page(client, path: str, repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Server time of a page (ms) through the test client, after a warm-up."""
    from django.db import connection

    for _ in range(2):
        assert client.get(path).status_code == 200, path
    statements: list[str] = []
    with connection.execute_wrapper(
        lambda run, sql, *rest: statements.append(sql) or run(sql, *rest)
    ):
        client.get(path)
    times = []
    with quiet_collector():
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
    return {
        "p50": statistics.median(times),
        "p95": percentile(times, 0.95),
        "max": max(times),
        "queries": len(statements),
    }


def measure_pages(users: list[int], repeat: int) -> dict[str, dict[str, float]]:
    from django.conf import settings
    from django.db.models import Count
    from django.test import Client

    from accounts.models import User
    from usage.models import Generation

    # Pages name their static files without a collectstatic run (as the tests do).
    settings.STORAGES["staticfiles"]["BACKEND"] = (
        "django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    heaviest = Generation.objects.values("user_id").annotate(n=Count("id")).order_by("-n").first()
    person = User.objects.get(pk=heaviest["user_id"])
    admin = User.objects.create(username="bench-admin", role="admin")
    staff, own = Client(), Client()
    staff.force_login(admin)
    own.force_login(person)
    results = {
        f"console month, by {by}": time_page(staff, f"/staff/usage/?period=month&by={by}", repeat)
        for by in ("model", "person", "group", "key")
    }
    results[f"Usage page ({heaviest['n']:,} generations)"] = time_page(own, "/usage/", repeat)
    results["Usage page, page 100 of the list"] = time_page(own, "/usage/?page=100", repeat)
    return results


# -- the meter -------------------------------------------------------------------------


def configure_limits() -> tuple[object, object, object, object]:
    """Two people: one with no limits configured at all, one limited every way."""
    from django.conf import settings
    from django.contrib.auth.models import Group

    from accounts import models as accounts
    from accounts.models import ApiKey, User

    zero = {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0}
    settings.QUOTAS = {"admin": dict(zero), "member": dict(zero)}
    free = User.objects.create(username="bench-free", role="member")
    limited = User.objects.create(username="bench-limited", role="member")
    big = {"tokens_per_day": 10**12, "tokens_per_month": 10**13, "requests_per_minute": 10**6,
           "concurrent": 1000}  # fmt: skip
    if hasattr(accounts, "PersonLimits"):
        accounts.PersonLimits.objects.create(user=limited, **big)
        group = Group.objects.create(name="bench-limited")
        accounts.GroupLimits.objects.create(group=group, **big)
        limited.groups.add(group)
    else:  # before per-person limits: the role's defaults are the only limits
        settings.QUOTAS["member"] = {
            name: big[name] for name in ("requests_per_minute", "concurrent", "tokens_per_day")
        }
    free_key = ApiKey.issue(free, "free")[0]
    limited_key = ApiKey.issue(limited, "limited")[0]
    if hasattr(limited_key, "tokens_per_day"):
        limited_key.tokens_per_day = 10**12
        limited_key.save()
    return free, free_key, limited, limited_key


async def meter_round(user, key, accepts_model: bool) -> float:  # type: ignore[no-untyped-def]
    from usage.services import admit

    extra = {"model": "llama3.2:latest"} if accepts_model else {}
    started = time.perf_counter()
    admission = await admit(user, door="api", api_key=key, prompt_tokens=50, **extra)
    await admission.charge(
        model="llama3.2:latest", prompt_tokens=50, completion_tokens=100, ttft_ms=200
    )
    return (time.perf_counter() - started) * 1000


async def measure_meter(rounds: int) -> dict[str, float]:
    from asgiref.sync import sync_to_async

    from usage.services import admit

    free, free_key, limited, limited_key = await sync_to_async(configure_limits)()
    accepts_model = "model" in inspect.signature(admit).parameters
    for _ in range(20):  # warm-up: scripts loaded, limits read, connections open
        await meter_round(free, free_key, accepts_model)
        await meter_round(limited, limited_key, accepts_model)
    free_times, limited_times = [], []
    with quiet_collector():
        for _ in range(rounds):
            free_times.append(await meter_round(free, free_key, accepts_model))
            limited_times.append(await meter_round(limited, limited_key, accepts_model))
    return {
        "no limits p50": statistics.median(free_times),
        "limits p50": statistics.median(limited_times),
        "added p50": statistics.median(limited_times) - statistics.median(free_times),
        "no limits p95": percentile(free_times, 0.95),
        "limits p95": percentile(limited_times, 0.95),
    }


def measure_ledger_writes(user_id: int, rounds: int) -> dict[str, float]:
    """What the rollups add to a charge: a ledger row alone vs with its rollups."""
    from usage import rollups
    from usage.models import Generation

    def write(with_rollups: bool) -> float:
        fields = {"user_id": user_id, "door": "web", "model": "llama3.2:latest", "status": "ok",
                  "prompt_tokens": 50, "completion_tokens": 100, "ttft_ms": 200,
                  "started_at": datetime.now(UTC)}  # fmt: skip
        started = time.perf_counter()
        if with_rollups:
            rollups.record(**fields)
        else:
            Generation.objects.create(**fields)
        return (time.perf_counter() - started) * 1000

    bare, rolled = [], []
    with quiet_collector():
        for _ in range(rounds):
            bare.append(write(False))
            rolled.append(write(True))
    return {
        "ledger row p50": statistics.median(bare),
        "ledger row + rollups p50": statistics.median(rolled),
    }


# -- one backend -----------------------------------------------------------------------


def run_backend(args: argparse.Namespace) -> dict[str, object]:
    """Build the world on the database in the environment and measure it."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    (data_dir / "staticfiles").mkdir()  # pages are served without a collectstatic run
    redis_process = set_up_django(data_dir)
    try:
        from django.db import connection

        from usage import rollups

        started = time.perf_counter()
        users, keys = make_people(args.people)
        insert_ledger(ledger_rows(args.rows, users, keys, args.days))
        generated = time.perf_counter() - started
        started = time.perf_counter()
        rollup_rows = rollups.rebuild()
        rebuilt = time.perf_counter() - started
        if connection.vendor == "postgresql":  # as autovacuum leaves a table in use
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        pages = measure_pages(users, args.repeat)
        meter = asyncio.run(measure_meter(args.rounds))
        meter.update(measure_ledger_writes(users[0], args.rounds))
        return {
            "backend": connection.vendor,
            "rows": args.rows,
            "rollup rows": rollup_rows,
            "generate s": round(generated, 1),
            "rollups rebuilt s": round(rebuilt, 1),
            "pages ms": pages,
            "meter ms": meter,
        }
    finally:
        from django.db import connections

        connections.close_all()
        if redis_process is not None:
            stop(redis_process)
        shutil.rmtree(data_dir, ignore_errors=True)


def private_postgres(url: str) -> tuple[str, object]:
    """A new database on the server of `url` for this run, and how to drop it."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"bench_usage_{os.getpid()}"
    admin = psycopg.connect(
        dbname="postgres", user=config["USER"], password=config["PASSWORD"] or None,
        host=config["HOST"] or None, port=config["PORT"] or None, autocommit=True,
    )  # fmt: skip
    admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return url.rsplit("/", 1)[0] + "/" + name, drop


def child(backend: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one backend in a process of its own (Django is set up once per process)."""
    env = {**os.environ}
    drop = None
    if backend == "sqlite":
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"], drop = private_postgres(os.environ["DATABASE_URL"])
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    try:
        output = subprocess.run(
            command, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True
        ).stdout
    finally:
        if drop is not None:
            drop()  # type: ignore[operator]
    return json.loads(output.strip().splitlines()[-1])


def report(result: dict[str, object]) -> None:
    print(
        f"\n== {result['backend']}: {result['rows']:,} ledger rows, "
        f"rollup rows {result['rollup rows']} (generated in {result['generate s']} s, "
        f"rollups built in {result['rollups rebuilt s']} s)"
    )
    print(f"{'page':<44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    for name, figures in result["pages ms"].items():  # type: ignore[attr-defined]
        print(f"{name:<44} {figures['p50']:>8.1f} {figures['p95']:>8.1f} {figures['max']:>8.1f}"
              f" {figures['queries']:>8}")  # fmt: skip
    meter = result["meter ms"]
    print(
        f"admit + charge: no limits p50 {meter['no limits p50']:.3f} ms "  # type: ignore[index]
        f"(p95 {meter['no limits p95']:.3f}), limits p50 {meter['limits p50']:.3f} ms "  # type: ignore[index]
        f"(p95 {meter['limits p95']:.3f}); added p50 {meter['added p50']:+.3f} ms"
    )  # type: ignore[index]
    print(
        f"charge's database write: ledger row alone p50 {meter['ledger row p50']:.3f} ms, "  # type: ignore[index]
        f"with its three rollups p50 {meter['ledger row + rollups p50']:.3f} ms"  # type: ignore[index]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=20, help="page renders measured")
    parser.add_argument("--rounds", type=int, default=500, help="admit+charge pairs measured")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_backend(args)))
        return
    backends = ["sqlite"]
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        backends.append("postgresql")
    for backend in backends:
        report(child(backend, args))


if __name__ == "__main__":
    main()
