"""Generator for the `workers_500k.csv` fixture: staffing-domain rows of every column kind.

Deterministic for a seed. Names carry quotes, commas and non-ASCII letters; some values
are empty, so every type sees NULLs.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

FIRST = ["Ana", "José", "Zoë", "Li", "Mary-Kate", "O'Neil", "Søren", "Amélie", "Nguyễn", "Sam"]
LAST = ["Smith", "García", "Müller", 'Johnson "JJ"', "Ødegaard", "Lee, Jr.", "Björk", "Kowalski"]
STATES = ["IL", "CA", "TX", "NY", "FL", "WA", "OH", "GA", "PA", "MI", "AZ", "CO"]
CITIES = ["Chicago", "Springfield", "Austin", "San José", "Düsseldorf Park", "Albany"]
ROLES = ["picker", "packer", "forklift", "driver", "supervisor", "clerk", "nurse", "welder"]
AGENCIES = ["Acme Staffing", "Blue, Green & Co", 'The "Best" Temps', "Über Crew", "Kelly"]
NOTES = ["", "", "reliable", 'said "never again"', "night shift, weekends", "ñandú handler"]

HEADER = [
    "worker_id", "first_name", "last_name", "email", "state", "city", "role", "agency",
    "hourly_rate", "weekly_hours", "is_active", "hire_date", "last_shift_at", "rating",
    "years_experience", "notes",
]  # fmt: skip


def worker_rows(count: int, seed: int = 7) -> Iterator[list[object]]:
    rng = random.Random(seed)
    start = date(2015, 1, 1)
    epoch = datetime(2024, 1, 1)
    for worker_id in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        yield [
            worker_id,
            first,
            last,
            f"w{worker_id}@example.com",
            rng.choice(STATES),
            rng.choice(CITIES),
            rng.choice(ROLES),
            rng.choice(AGENCIES),
            f"{rng.uniform(15, 60):.2f}",
            rng.randint(4, 60),
            "true" if rng.random() < 0.8 else "false",
            (start + timedelta(days=rng.randint(0, 3650))).isoformat(),
            (epoch + timedelta(seconds=rng.randint(0, 30_000_000))).isoformat(sep=" "),
            "" if rng.random() < 0.1 else f"{rng.uniform(1, 5):.1f}",
            "" if rng.random() < 0.05 else rng.randint(0, 40),
            rng.choice(NOTES),
        ]


def write_sample_csv(path: Path, rows: int = 500_000, seed: int = 7) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(worker_rows(rows, seed))
    return path
