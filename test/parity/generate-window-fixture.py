"""Writes the window parity fixture: what LiteLLM's own job does to window budgets, case by case.

Run through `test/parity/generate-schedule-fixture.sh` (the same cached virtualenv as the schedule fixture). Each
case is one key or team with a `budget_limits` list, spend counters, `LiteLLM_BudgetWindowSpend` rows, rollover on
or off, and a pinned "now". LiteLLM's real `ResetBudgetJob._reset_windows_for` walks it (the method
`reset_budget_windows` calls for each table, with its `now = datetime.utcnow()` passed in), which runs
`_reset_window_page`, `_reset_expired_window`, `_window_carried_spend`, `compute_budget_reset_at`,
`_roll_window_spend_row`, `roll_window_spend_row` and a real `DualCache` over a real `RedisCache`: all of LiteLLM's
logic runs. Only its I/O is replaced by the recorders below, and its clock is pinned to the case's "now".

The fixture records, for each case, LiteLLM's resulting `budget_limits` (the JSON it wrote, or none), the values it
SET on spend counters, and the SQL statements it sent to `LiteLLM_BudgetWindowSpend` (replayed on real PostgreSQL
by `window-parity.test.ts`, so the row updates are LiteLLM's own statement's), or what it raised.

Cases come from a fixed seed: a rerun with the same versions writes the same file.
Usage: python generate-window-fixture.py WINDOWS.json
"""

import asyncio
import json
import logging
import os
import random
import sys
import time as time_module
from datetime import datetime, timedelta, timezone
from importlib.metadata import version

os.environ["TZ"] = "UTC"  # `duration_in_seconds("1mo")` measures months in the process's local zone
time_module.tzset()

import litellm  # noqa: E402
import litellm._redis  # noqa: E402
from litellm.caching.dual_cache import DualCache  # noqa: E402
from litellm.caching.in_memory_cache import InMemoryCache  # noqa: E402
from litellm.caching.redis_cache import RedisCache  # noqa: E402
from litellm.litellm_core_utils import duration_parser  # noqa: E402
from litellm.proxy.common_utils import timezone_utils  # noqa: E402
from litellm.proxy.common_utils.reset_budget_job import _WINDOW_SOURCES, ResetBudgetJob  # noqa: E402
from litellm.proxy.common_utils.timezone_utils import BudgetResetSettings  # noqa: E402
from litellm.proxy.db import budget_window_spend_writer  # noqa: E402

logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
logging.getLogger("LiteLLM Proxy").setLevel(logging.CRITICAL)

UTC = timezone.utc
SEED = 20260302
CASES = 400

# --- The recorders: I/O only. Every decision stays in LiteLLM's code. -------------------------------------------


class PrismaRecorder:
    """Stands in for LiteLLM's `PrismaClient` (prisma-client-py behind it), for exactly the calls the window walk makes:

    - `db.query_raw(_WindowSource.page_query(), cursor, batch_size)`: the keyset page read. Answers what that SQL
      answers for the case's one owner row: the row when its id sorts after the cursor and `budget_limits` is not
      NULL. `budget_limits` comes back decoded, as prisma-client-py returns a `jsonb` column of a raw query.
    - `db.execute_raw(sql, *params)`: `roll_window_spend_row`'s statement; recorded, replayed by the test.
    - `db.litellm_verificationtoken.update` / `db.litellm_teamtable.update`: the ORM write of `budget_limits` by
      `_write_key_windows` / `_write_team_windows`; recorded.
    """

    def __init__(self, id_column: str, owner_id: str, limits_json: str | None) -> None:
        self.db = self
        self.id_column = id_column
        self.owner_id = owner_id
        self.limits_json = limits_json
        self.statements: list[dict] = []
        self.writes: list[dict] = []
        self.litellm_verificationtoken = self._Table(self, "token")
        self.litellm_teamtable = self._Table(self, "team_id")

    class _Table:
        def __init__(self, recorder: "PrismaRecorder", key: str) -> None:
            self.recorder, self.key = recorder, key

        async def update(self, where: dict, data: dict) -> None:
            self.recorder.writes.append({"where": where[self.key], "budget_limits": data["budget_limits"]})

    async def query_raw(self, sql: str, cursor: str, limit: int) -> list[dict]:
        if self.limits_json is None or not self.owner_id > cursor:
            return []
        return [{self.id_column: self.owner_id, "budget_limits": json.loads(self.limits_json)}]

    async def execute_raw(self, sql: str, *params: object) -> int:
        self.statements.append({"sql": sql, "params": [param_json(p) for p in params]})
        return 1


def param_json(value: object) -> object:
    # `roll_window_spend_row` passes naive datetimes holding UTC (`to_naive_utc`): written with their `Z`.
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return value


class RedisClientRecorder:
    """Stands in for the redis-py clients inside LiteLLM's real `RedisCache`: `get` answers the case's seeded bytes
    (what Redis holds), `set` records what `RedisCache.async_set_cache` sends (its `json.dumps` and expiry)."""

    def __init__(self, counters: dict[str, str]) -> None:
        self.counters = counters
        self.sets: list[list] = []

    async def get(self, key: str) -> bytes | None:
        value = self.counters.get(key)
        return None if value is None else value.encode()

    async def set(self, name: str, value: str, nx: bool = False, ex: object = None) -> bool:
        self.sets.append([name, value, ex])
        return True

    def info(self) -> dict:
        return {"redis_version": "recorder"}


def redis_cache(recorder: RedisClientRecorder) -> RedisCache:
    """LiteLLM's own `RedisCache` (its encoding and decoding run), its connections being the recorder."""
    litellm._redis.get_redis_client = lambda **_: recorder
    litellm._redis.get_redis_connection_pool = lambda **_: None
    cache = RedisCache()
    cache.init_async_client = lambda: recorder  # type: ignore[method-assign]
    return cache


def pin_clock(now: datetime) -> None:
    """LiteLLM reads the clock in three places on this path; each reads `now` instead."""

    class PinnedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # compute_budget_reset_at, roll_window_spend_row's updated_at
            return now if tz is not None else now.replace(tzinfo=None)

        @classmethod
        def utcnow(cls):
            return now.replace(tzinfo=None)

    class PinnedTime:
        def __getattr__(self, name):
            return getattr(time_module, name)

        @staticmethod
        def time() -> float:  # duration_in_seconds("Nmo"): months measured from now
            return now.timestamp()

    timezone_utils.datetime = PinnedDatetime
    budget_window_spend_writer.datetime = PinnedDatetime
    duration_parser.time_module = PinnedTime()


# --- Running one case through LiteLLM ---------------------------------------------------------------------------


def litellm_answer(case: dict) -> dict:
    source = _WINDOW_SOURCES[0 if case["owner"] == "key" else 1]
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    pin_clock(now)
    litellm.budget_rollover = case["rollover"]
    prisma = PrismaRecorder(source.id_column, case["id"], json.dumps(case["limits"]))
    redis = RedisClientRecorder(case["counters"])
    cache = DualCache(in_memory_cache=InMemoryCache(), redis_cache=redis_cache(redis))
    job = ResetBudgetJob(proxy_logging_obj=None, prisma_client=prisma, reset_settings=BudgetResetSettings())
    answer: dict = {}
    try:
        asyncio.run(job._reset_windows_for(source=source, now=now.replace(tzinfo=None), spend_counter_cache=cache))
    except Exception as error:  # noqa: BLE001  # LiteLLM's failure is the answer (its walk of the table stops)
        answer["raised"] = f"{type(error).__name__}: {error}"
    if len(prisma.writes) > 1:
        raise AssertionError(f"one owner, more than one write: {prisma.writes}")
    answer["limits"] = json.loads(prisma.writes[0]["budget_limits"]) if prisma.writes else None
    answer["counterSets"] = redis.sets
    answer["spendStatements"] = prisma.statements
    return answer


# --- The cases --------------------------------------------------------------------------------------------------

NOWS = [
    "2026-03-01T00:00:00.000Z",  # a Sunday midnight, first of a month
    "2026-03-04T13:00:00.000Z",  # on an hour, mid-week
    "2026-03-04T13:37:12.345Z",  # between everything
    "2026-02-28T23:59:59.999Z",  # a millisecond before a month
    "2024-02-29T12:00:00.000Z",  # a leap day
    "2026-12-31T23:30:00.000Z",  # the year's last half hour
    "2026-04-30T00:00:00.000Z",  # the end of a 30-day month
]
DURATIONS = ["1h", "2h", "30m", "15m", "45s", "1d", "2d", "7d", "1w", "30d", "1mo", "24h", "12h"]
RARE_DURATIONS = ["1days", "1hour", "daily", "hourly", "1Mo", "72h", "0h", "5min", "1d "]
LATENESS = [timedelta(seconds=1), timedelta(minutes=59), timedelta(hours=3), timedelta(days=2), timedelta(days=40)]
AHEAD = [timedelta(milliseconds=1), timedelta(minutes=30), timedelta(days=1), timedelta(days=400)]
COUNTERS = ["7.5", "20.0", "0.0", "3", "0.5", "100.25", "1e-05", "12.500000000000002", "250"]
RARE_COUNTERS = ["true", "Infinity", "NaN", '"5"', "abc", "-3", " 4 ", "", "null", "1e400"]
MAX_BUDGETS = [5, 12.5, 0, 100, 1, 0.1]
RARE_MAX_BUDGETS = ["10", True, -1, 1e-7, None, 1e308]
EXTRAS = [
    {"label": "team cap"},
    {"meta": {"owner": "ops", "tags": ["a", "b"]}},
    {"note": None},
    {"owner_note": "caf\u00e9 \U0001f680"},
    {"nested": [1, 2.5, {"deep": True}], "flag": False},
]


def iso(moment: datetime, form: str) -> str:
    """`reset_at` as text, in the forms LiteLLM and hand-written rows use."""
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    if form == "Z":
        return naive.isoformat(timespec="seconds") + "Z"
    if form == "+00:00":
        return moment.astimezone(UTC).isoformat()
    if form == "none":
        return naive.isoformat()
    if form == "micro":
        return naive.replace(microsecond=123456).isoformat() + "+00:00"
    if form == "space":
        return naive.isoformat(sep=" ", timespec="seconds") + "+00:00"
    if form == "+05:30":
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    if form == "-08:00":
        return moment.astimezone(timezone(timedelta(hours=-8))).isoformat()
    raise ValueError(form)


FORMS = ["Z", "+00:00", "none", "Z", "+00:00", "none", "micro", "space", "+05:30", "-08:00"]


def window(rng: random.Random, duration: str, now: datetime, when: str) -> dict:
    w: dict = {"budget_duration": duration}
    if rng.random() < 0.85:
        w["max_budget"] = rng.choice(MAX_BUDGETS) if rng.random() < 0.85 else rng.choice(RARE_MAX_BUDGETS)
    form = rng.choice(FORMS)
    if when == "due":
        w["reset_at"] = iso(now, form)
    elif when == "late":
        w["reset_at"] = iso(now - rng.choice(LATENESS), form)
    elif when == "ahead":
        w["reset_at"] = iso(now + rng.choice(AHEAD), form)
    elif when == "null":
        w["reset_at"] = None
    elif when == "empty":
        w["reset_at"] = ""
    # "absent": no reset_at at all
    if rng.random() < 0.35:
        w.update(rng.choice(EXTRAS))
    if rng.random() < 0.5:  # key order must survive: LiteLLM writes its dicts back in their order
        w = dict(reversed(list(w.items())))
    return w


def malformed(rng: random.Random, now: datetime) -> object:
    """Elements LiteLLM's job cannot handle (its API never writes them)."""
    return rng.choice([
        "1h",
        {"max_budget": 5, "reset_at": iso(now, "Z")},
        {"budget_duration": 1, "reset_at": iso(now, "Z")},
        {"budget_duration": "1h", "reset_at": 1767225600},
        {"budget_duration": "1h", "reset_at": "not a date"},
    ])


def make_case(rng: random.Random, index: int) -> dict:
    owner = rng.choice(["key", "team"])
    prefix = "k" if owner == "key" else "t"
    owner_id = rng.choice([f"{prefix}-{index:04d}", f"{prefix}-{index:04d}", f"{prefix}:{index:04d}:colon", f"{prefix}-{index:04d}-\u00e9"])
    now_text = rng.choice(NOWS)
    now = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
    durations = rng.sample(DURATIONS, rng.randint(1, 4))
    if rng.random() < 0.15:
        durations.append(rng.choice(RARE_DURATIONS))
    limits: list = [
        window(rng, d, now, rng.choice(["due", "due", "late", "late", "ahead", "ahead", "absent", "null", "empty"]))
        for d in dict.fromkeys(durations)
    ]
    if rng.random() < 0.05:  # a duration repeated
        repeated = dict(rng.choice([w for w in limits]))
        repeated["reset_at"] = rng.choice([repeated.get("reset_at"), iso(now, "+00:00")])
        limits.insert(rng.randrange(len(limits) + 1), repeated)
    if rng.random() < 0.03:  # a duration holding our separator
        limits.append({"budget_duration": "1:h", "max_budget": 1, "reset_at": iso(now, "+00:00")})
    if rng.random() < 0.05:
        limits.insert(rng.randrange(len(limits) + 1), malformed(rng, now))
    counters: dict[str, str] = {}
    spend_rows: list[dict] = []
    for w in limits:
        if not isinstance(w, dict) or not isinstance(w.get("budget_duration"), str):
            continue
        d = w["budget_duration"]
        key = f"spend:{owner}:{owner_id}:window:{d}"
        if rng.random() < 0.85 and key not in counters:
            counters[key] = rng.choice(COUNTERS) if rng.random() < 0.9 else rng.choice(RARE_COUNTERS)
        if rng.random() < 0.6 and d not in [r["duration"] for r in spend_rows]:
            start = now + rng.choice([timedelta(days=-40), timedelta(days=-2), timedelta(hours=-1), timedelta(0),
                                      timedelta(hours=1), timedelta(days=1)])
            spend_rows.append({"duration": d, "windowStart": start.isoformat().replace("+00:00", "Z"),
                               "spend": rng.choice([0.0, 1.5, 7.5, 40.0, 1234.5678])})
    return {
        "name": f"case-{index:04d}",
        "owner": owner,
        "id": owner_id,
        "now": now_text,
        "rollover": rng.random() < 0.5,
        "limits": limits,
        "counters": counters,
        "spendRows": spend_rows,
    }


def main() -> None:
    rng = random.Random(SEED)
    cases = [make_case(rng, i) for i in range(CASES)]
    for case in cases:
        case["litellm"] = litellm_answer(case)
    fixture = {
        "generator": "test/parity/generate-window-fixture.py",
        "litellm": version("litellm"),
        "python": sys.version.split()[0],
        "cases": cases,
    }
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write("{\n")
        for key in ("generator", "litellm", "python"):
            out.write(f"  {json.dumps(key)}: {json.dumps(fixture[key])},\n")
        out.write('  "cases": [\n')
        out.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        out.write("\n  ]\n}\n")
    resets = sum(len(c["litellm"]["counterSets"]) for c in cases)
    raised = sum(1 for c in cases if "raised" in c["litellm"])
    print(f"{len(cases)} window cases ({resets} windows reset, {raised} raised) written to {sys.argv[1]}")


if __name__ == "__main__":
    main()
