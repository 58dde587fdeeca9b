"""Writes the parity fixtures: LiteLLM's own answers for thousands of budget schedules, and its cache facts.

Run through `test/parity/generate-schedule-fixture.sh`, which installs the pinned LiteLLM and tzdata into a
cached virtualenv. Every answer comes from LiteLLM's real functions:

- `get_next_standardized_reset_time` (litellm_core_utils/duration_parser.py): the next reset, exactly the call
  `compute_budget_reset_at` (proxy/common_utils/timezone_utils.py) makes, with `now` passed in instead of
  read from the clock;
- `budget_duration_error` (timezone_utils.py): whether LiteLLM's API stores the duration at all;
- `parse_budget_reset_time` (timezone_utils.py): what `litellm_settings.budget_reset_time` accepts;
- the second file: the invalidation channel, the global proxy spend cache key, and the exact message
  `auth_cache_invalidation_pubsub.py` publishes for a few awkward keys.

The cases are generated from a fixed seed, so a rerun with the same versions writes the same file.
Usage: python generate-schedule-fixture.py SCHEDULE.json CACHE.json
"""

import json
import logging
import random
import sys
from datetime import date, datetime, time, timedelta, timezone
from importlib.metadata import version
from zoneinfo import ZoneInfo

from litellm.constants import GLOBAL_PROXY_SPEND_CACHE_KEY, LITELLM_PROXY_BUDGET_NAME
from litellm.litellm_core_utils.duration_parser import get_next_standardized_reset_time
from litellm.proxy.common_utils.auth_cache_invalidation_pubsub import (
    AUTH_CACHE_INVALIDATION_CHANNEL,
    _cache_invalidation_message_json,
)
from litellm.proxy.common_utils.timezone_utils import budget_duration_error, parse_budget_reset_time

# LiteLLM warns on every unreadable duration; thousands of those lines say nothing here.
logging.getLogger("LiteLLM").setLevel(logging.ERROR)

UTC = timezone.utc
SEED = 20260301

DURATIONS = [
    # The documented forms.
    *("1s 15s 45s 90s 86400s 1m 7m 30m 45m 90m 100m 120m 1440m 3000m".split()),
    *("1h 2h 5h 6h 12h 23h 24h 36h 47h 48h 72h 100h 168h".split()),
    *("1d 2d 3d 7d 14d 30d 31d 365d 3650d 01d 030d 1w 2w 4w 1mo 01mo".split()),
    "hourly", "daily", "weekly", "monthly", "Daily", "HOURLY", " weekly ", "\tmonthly\n",
    # No end anchor: letters LiteLLM's scheduler does not know, and text after a known unit.
    *("1days 7days 30days 1min 5mins 1ms 1sec 60secs 1hour 24hours 1month 2month 1mox 1dx 1wk 1y".split()),
    "1h30m", "1d x", "1d5", "1d.5", "1d ", "1mo x", "1m0",
    # Text the scheduler cannot read at all.
    "1D", "1H", "1Mo", "1.5h", "1,5h", "1 d", " 1d", "1", "d", "mo", "", "   ", "abc", "day", "yearly",
    "daily2", "-1d", "+1d", "1e3s", "1_d",
    # Zero, months other than one, and sizes near what a Python datetime can hold.
    "0s", "0m", "0h", "00h", "0d", "0w", "0mo", "0days", "2mo", "12mo",
    "2000000d", "3000000d", "99999999999d", "1000000h", "99999999999999999999h", "99999999999999999999days",
    # Characters where Python and JavaScript differ: Unicode digits, Python-only whitespace, the Kelvin sign.
    "\u0661d", "hourly\x1c", "wee\u212aly",
]

ZONES = [
    "UTC", "America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin", "Europe/Dublin",
    "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tehran", "Asia/Tokyo",
    "America/St_Johns", "America/Santiago", "America/Havana", "America/Sao_Paulo", "Africa/Casablanca",
    "Antarctica/Troll", "Pacific/Apia", "Pacific/Chatham", "Pacific/Kiritimati",
]

RESET_TIMES = ["00:00", "09:30", "02:30", "01:30", "00:30", "12:00:30", "23:59:59"]

# What `budget_reset_time` accepts, and what it refuses.
RAW_RESET_TIMES = [
    "00:00", "7:5", "07:05", "7:05", "07:5", "09:05:30", "00:00:00", "23:59:59", "23:59", "9:5:7", "12:00",
    "24:00", "12:60", "09:05:60", "09:05:61", "9", "0930", "09:30:", ":30", " 09:30", "09:30 ", "noon", "-1:00",
    "007:05", "09:005", "1:2:3:4", "\uff10\uff19:\uff13\uff10",
]

YEARS_WITH_TRANSITIONS = [2011, 2019, 2023, 2024, 2025, 2026, 2027]


def ms_iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """Instants where the zone's offset changes during `year`, to the second."""
    found: list[datetime] = []
    start = datetime(year, 1, 1, tzinfo=UTC)
    for day in range(366):
        lo, hi = start + timedelta(days=day), start + timedelta(days=day + 1)
        if lo.astimezone(zone).utcoffset() == hi.astimezone(zone).utcoffset():
            continue
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                lo = mid
            else:
                hi = mid
        found.append(hi.replace(microsecond=0))
    return found


def local(zone: ZoneInfo, wall: datetime, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def interesting_instants(zone: ZoneInfo, rng: random.Random) -> list[datetime]:
    """Instants around clock changes, at local boundaries, month ends, leap days and year ends."""
    out: list[datetime] = []
    for year in YEARS_WITH_TRANSITIONS:
        for change in transitions(zone, year):
            for delta in (-7200, -3660, -1800, -0.001, 0, 0.001, 1800, 3660, 5400, 7200, 86400 - 1):
                out.append(change + timedelta(seconds=delta))
            # Local wall times on the day of the change, each on its first and its second pass.
            day = change.astimezone(zone).date()
            for hh, mm in ((0, 0), (0, 30), (1, 0), (1, 30), (2, 0), (2, 30), (3, 0), (23, 59)):
                for fold in (0, 1):
                    out.append(local(zone, datetime(day.year, day.month, day.day, hh, mm), fold))
    for y, m, d in ((2023, 1, 31), (2023, 2, 28), (2024, 2, 28), (2024, 2, 29), (2100, 2, 28), (2000, 2, 29),
                    (2023, 6, 30), (2023, 12, 31), (2026, 3, 1), (2027, 12, 31)):
        for hh, mm, ss, us in ((0, 0, 0, 0), (9, 30, 0, 0), (12, 0, 0, 0), (23, 59, 59, 999000)):
            out.append(local(zone, datetime(y, m, d, hh, mm, ss, us)))
    for _ in range(30):
        ms = rng.randrange(int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000),
                           int(datetime(2040, 1, 1, tzinfo=UTC).timestamp() * 1000))
        out.append(datetime.fromtimestamp(ms / 1000, tz=UTC))
    return sorted(set(t.replace(microsecond=t.microsecond // 1000 * 1000) for t in out))


def exists(zone: ZoneInfo, wall: datetime) -> bool:
    """Whether the clock in `zone` ever reads the naive local time `wall`."""
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def answer(duration: str, now: datetime, zone_name: str, reset: time) -> dict:
    try:
        result = get_next_standardized_reset_time(duration, now, zone_name, reset)
    except Exception as error:  # noqa: BLE001  # LiteLLM's failure is the answer
        return {"error": f"{type(error).__name__}: {error}"}
    zone = ZoneInfo(zone_name)
    out = {"at": ms_iso(result)}
    if not exists(zone, result.replace(tzinfo=None)):
        out["gap"] = 1
    return out


def case(duration: str, now: datetime, zone_name: str, reset_text: str) -> dict:
    reset = parse_budget_reset_time(reset_text)
    in_zone = now.astimezone(ZoneInfo(zone_name))
    out = {"d": duration, "z": zone_name, "t": reset_text, "now": ms_iso(now)}
    if in_zone.fold:
        out["fold"] = 1
    out.update(answer(duration, now, zone_name, reset))
    return out


def main() -> None:
    rng = random.Random(SEED)
    cases: list[dict] = []
    per_zone = {name: interesting_instants(ZoneInfo(name), rng) for name in ZONES}
    # Every duration in every zone at a few instants, with every reset time over the run.
    for name in ZONES:
        for duration in DURATIONS:
            for now in rng.sample(per_zone[name], 2):
                cases.append(case(duration, now, name, rng.choice(RESET_TIMES)))
    # Documented durations densely around the interesting instants.
    documented = DURATIONS[: DURATIONS.index("1days")]
    for name in ZONES:
        for now in rng.sample(per_zone[name], min(120, len(per_zone[name]))):
            cases.append(case(rng.choice(documented), now, name, rng.choice(RESET_TIMES)))
    # Chains: LiteLLM's answer fed back as `now`, which is how a budget steps from boundary to boundary.
    for _ in range(300):
        name, duration, reset = rng.choice(ZONES), rng.choice(documented), rng.choice(RESET_TIMES)
        now = rng.choice(per_zone[name])
        for _ in range(4):
            step = case(duration, now, name, reset)
            cases.append(step)
            if "error" in step:
                break
            following = datetime.fromisoformat(step["at"].replace("Z", "+00:00"))
            if following <= now:
                break
            now = following

    fixture = {
        "generator": "test/parity/generate-schedule-fixture.py",
        "litellm": version("litellm"),
        "tzdata": version("tzdata"),
        "python": sys.version.split()[0],
        "api": {d: budget_duration_error(d) is None for d in DURATIONS},
        "resetTimes": [reset_time_answer(raw) for raw in RAW_RESET_TIMES],
        "cases": cases,
    }
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write("{\n")
        for key in ("generator", "litellm", "tzdata", "python", "api", "resetTimes"):
            out.write(f"  {json.dumps(key)}: {json.dumps(fixture[key])},\n")
        out.write('  "cases": [\n')
        out.write(",\n".join("    " + json.dumps(c) for c in cases))
        out.write("\n  ]\n}\n")
    print(f"{len(cases)} cases written to {sys.argv[1]}")

    awkward_keys = ["spend:tag:tenant:acme", "tag:\u00fcn\u00efc\u00f8d\u00e9 \U0001f680", 'a b "c" \'d\'', "back\\slash",
                    "tab\tnew\nline", "del\x7f", GLOBAL_PROXY_SPEND_CACHE_KEY]
    cache = {
        "generator": "test/parity/generate-schedule-fixture.py",
        "litellm": version("litellm"),
        "channel": AUTH_CACHE_INVALIDATION_CHANNEL,
        "globalProxySpendCacheKey": GLOBAL_PROXY_SPEND_CACHE_KEY,
        "proxyBudgetName": LITELLM_PROXY_BUDGET_NAME,
        "messages": [[key, _cache_invalidation_message_json(key)] for key in awkward_keys],
    }
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(cache, out, indent=2)
        out.write("\n")


def reset_time_answer(raw: str) -> dict:
    try:
        return {"raw": raw, "time": parse_budget_reset_time(raw).isoformat()}
    except ValueError as error:
        return {"raw": raw, "error": str(error)}


if __name__ == "__main__":
    main()
