"""`reer-runtime validate`: check a data dir, its configuration and its models; report every problem."""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import get_args

import anyio

from bus.jetstream import redacted
from reer_runtime.stats import STATS_FILE
from runtime.config import Settings, load_settings
from runtime.errors import ConfigError, CorruptRecordError, ProviderConfigError, UsageError
from runtime.ledger import Stores
from runtime.providers import open_provider
from runtime.providers.calls import Role
from runtime.providers.detect import detect
from runtime.schemas import RECORDS, SCHEMA_DIR, render


async def _bus_groups(settings: Settings) -> int:
    """How many consumer groups the configured NATS bus has; raises `UsageError` if it cannot be reached."""
    from reer_runtime.daemon import connect_bus

    async with AsyncExitStack() as stack:
        transport = await connect_bus(settings, stack, role="validator")
        return len(await transport.groups())


def validate(data_dir: Path, provider: str | None = None, config: Path | None = None) -> int:
    """Print one line per check; returns 1 if any found a problem."""
    problems: list[str] = []

    def ok(line: str) -> None:
        print(f"ok       {line}")

    def bad(line: str) -> None:
        problems.append(line)
        print(f"PROBLEM  {line}")

    def note(line: str) -> None:
        print(f"note     {line}")

    if not data_dir.is_dir():
        bad(f"data dir {data_dir} does not exist (--data-dir, else $REER_HOME, else ~/.reer); `start` makes it")
    try:
        settings = load_settings(data_dir, config)
        ok(f"configuration read from {settings.config_file or 'no file (the defaults)'} and the REER_* variables")
    except ConfigError as exc:
        bad(str(exc))
        settings = None

    for store in Stores.at(data_dir, settings.traces_path if settings else None).all():
        if not store.path.exists():
            continue
        data = store.path.read_bytes()
        if data and not data.endswith(b"\n"):
            torn = len(data) - data.rfind(b"\n") - 1
            bad(f"{store.path}: torn last record ({torn} bytes); the next start repairs it")
        try:
            count = sum(1 for _ in store.read())
            shown = store.path.relative_to(data_dir) if store.path.is_relative_to(data_dir) else store.path
            ok(f"{shown}: {count} record{'' if count == 1 else 's'}")
        except CorruptRecordError as exc:
            bad(str(exc))

    missing = [n for n in RECORDS if not (SCHEMA_DIR / f"{n}.schema.json").is_file()]
    if missing:
        bad(f"schemas {', '.join(missing)} are missing from {SCHEMA_DIR}: the installation is incomplete, reinstall it")
    elif drifted := [n for n in RECORDS if (SCHEMA_DIR / f"{n}.schema.json").read_text() != render(n)]:
        # a developer's matter (the tests fail on it), not a problem of this data dir
        note(f"schemas {', '.join(drifted)} differ from what this code writes (python -m runtime.schemas --write)")
    else:
        ok(f"schemas in {SCHEMA_DIR}")

    stats_file = data_dir / STATS_FILE
    if stats_file.exists():
        circuits = json.loads(stats_file.read_text()).get("circuits", {})
        for uri, state in circuits.items():
            if state == "closed":
                ok(f"{uri}: circuit closed at the last snapshot")
            else:
                bad(f"{uri}: circuit {state} at the last snapshot (the provider kept failing; see the logs)")

    if settings and settings.bus.url != "memory://":
        try:
            groups = anyio.run(_bus_groups, settings)
            ok(f"bus {redacted(settings.bus.url)}, namespace {settings.bus.namespace!r}: {groups} consumer groups")
        except UsageError as exc:
            bad(str(exc))

    roles: dict[str, list[Role]] = {provider: ["generator", "scorer"]} if provider else {}
    if settings and not provider:
        for role in get_args(Role):
            for uri in getattr(settings, role):
                roles.setdefault(uri, []).append(role)
    for uri in sorted(roles):
        try:
            model = open_provider(uri, data_dir)
            for role in roles[uri]:
                ok(f"{uri} as {role}: {anyio.run(model.check, role)}")
        except ProviderConfigError as exc:
            bad(str(exc))
            continue
        described = model.describe()
        for line in described.lines:
            ok(f"{uri}: {line}")
        for line in described.problems:
            bad(f"{uri}: {line}")
        for line in described.notes:
            note(f"{uri}: {line}")

    configured = [*settings.generator, *settings.scorer] if settings else []
    for found in detect(configured):
        can = "scores and generates" if found.scores else "generates only"
        note(f"available: {found.uri} ({can if found.usable else 'unusable'}): {found.how}")

    print(f"{len(problems)} problem(s) found" if problems else "no problems found", file=sys.stderr)
    return 1 if problems else 0
