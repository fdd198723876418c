"""NATS with accounts: the daemon mines over a broker in operator mode with a credentials file
(`bus.creds`), and a user the broker's operator never signed is refused. The operator, accounts and
user are made here with `nkeys`, as `nsc` makes them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys
import pytest

from tests.helpers import post_line, run_cli
from tests.nats_server import nats_server

pytestmark = pytest.mark.daemon
UNLIMITED = dict.fromkeys(("subs", "data", "payload", "imports", "exports", "conn", "leaf"), -1)
JETSTREAM = dict.fromkeys(("mem_storage", "disk_storage", "streams", "consumer"), -1)


def _keys(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(issuer: nkeys.KeyPair, subject: nkeys.KeyPair, name: str, claims: dict[str, Any]) -> str:
    """A NATS JWT for `subject`, signed by `issuer` (the v2 claims `nsc` writes)."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject.public_key.decode(),
        "nats": {**claims, "version": 2},
    }
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body).encode()).digest()).decode().rstrip("=")
    signed = f"{header}.{_b64(json.dumps(body).encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def _creds(path: Path, account: nkeys.KeyPair) -> nkeys.KeyPair:
    """Write a credentials file of a new user of `account` at `path`; the user's keys."""
    user = _keys(nkeys.PREFIX_BYTE_USER)
    token = _jwt(account, user, "worker", {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return user


def _operator_config(folder: Path) -> tuple[Path, nkeys.KeyPair]:
    """A `nats-server` config in operator mode with a system account and one JetStream account; the account's keys."""
    operator, system, account = _keys(nkeys.PREFIX_BYTE_OPERATOR), *(_keys(nkeys.PREFIX_BYTE_ACCOUNT) for _ in "ab")
    (folder / "operator.jwt").write_text(_jwt(operator, operator, "op", {"type": "operator"}))
    accounts = {
        system.public_key.decode(): _jwt(operator, system, "SYS", {"type": "account"}),
        account.public_key.decode(): _jwt(
            operator, account, "reer", {"type": "account", "limits": {**UNLIMITED, **JETSTREAM, "wildcards": True}}
        ),
    }
    preload = ", ".join(f'{key}: "{token}"' for key, token in accounts.items())
    config = folder / "nats.conf"
    config.write_text(
        f'operator: "{folder / "operator.jwt"}"\nsystem_account: {system.public_key.decode()}\n'
        f"resolver: MEMORY\nresolver_preload: {{ {preload} }}\n"
    )
    return config, account


def test_the_daemon_mines_with_a_creds_file_and_a_user_of_another_operator_is_refused(tmp_path: Path) -> None:
    config, account = _operator_config(tmp_path)
    user = _creds(tmp_path / "worker.creds", account)
    _creds(tmp_path / "stranger.creds", _keys(nkeys.PREFIX_BYTE_ACCOUNT))  # an account the broker never saw
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(4)))
    runs = {}
    with nats_server(tmp_path / "js", config=config) as url:
        for name in ("worker", "stranger"):
            settings = tmp_path / f"{name}.toml"
            settings.write_text(f'[bus]\ncreds = "{tmp_path / f"{name}.creds"}"\n')
            runs[name] = run_cli(
                tmp_path / name,
                "--config",
                str(settings),
                "start",
                "--input",
                str(posts),
                "--exit-when-idle",
                "--min-engagement",
                "0",
                "--bus",
                url,
            )
    mined, refused = runs["worker"], runs["stranger"]
    assert mined.returncode == 0, mined.stderr[-3000:]
    traces = (tmp_path / "worker" / "traces.jsonl").read_text().splitlines()
    assert sorted(json.loads(t)["post"]["id"] for t in traces) == ["0", "1", "2", "3"]
    assert refused.returncode == 2 and "no NATS server answers" in refused.stderr, refused.stderr[-2000:]
    for done in runs.values():
        assert user.seed.decode() not in done.stdout + done.stderr


def test_a_creds_file_that_is_not_there_is_named_before_any_connection(tmp_path: Path) -> None:
    settings = tmp_path / "reer.toml"
    settings.write_text(f'[bus]\ncreds = "{tmp_path / "gone.creds"}"\n')
    done = run_cli(
        tmp_path / "data", "--config", str(settings), "start", "--exit-when-idle", "--bus", "nats://127.0.0.1:9"
    )
    assert done.returncode == 2 and "bus.creds: Path does not point to a file" in done.stderr, done.stderr
