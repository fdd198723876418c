"""A broker reachable by others is a trust boundary: NATS over TLS with a user and password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme

from tests.helpers import post_line, run_cli
from tests.nats_server import nats_server

pytestmark = pytest.mark.daemon
PASSWORD = "s3cret-bus-pass-71c9"


def test_the_daemon_mines_over_tls_with_a_user_and_refuses_a_broker_it_cannot_trust(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    config = tmp_path / "nats.conf"
    config.write_text(
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\nauthorization {{ user: "reer", password: "{PASSWORD}" }}\n'
    )
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(4)))
    with nats_server(tmp_path / "js", config=config) as url:
        address = url.removeprefix("nats://")
        secure = f"tls://reer:{PASSWORD}@{address}"
        mine = ["start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", "--bus", secure]
        untrusted = run_cli(tmp_path / "untrusted", *mine)
        trusted = run_cli(tmp_path / "trusted", "--config", str(_ca_config(tmp_path, ca_file)), *mine)
        wrong = run_cli(
            tmp_path / "wrong",
            "--config",
            str(_ca_config(tmp_path, ca_file)),
            *mine[:-1],
            secure.replace(PASSWORD, "nope-nope"),
        )
    assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr[-2000:]
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    traces = (tmp_path / "trusted" / "traces.jsonl").read_text().splitlines()
    assert sorted(json.loads(t)["post"]["id"] for t in traces) == ["0", "1", "2", "3"]
    assert f"tls://***@{address}" in trusted.stderr  # the bus is named without its password
    assert wrong.returncode == 2 and "no NATS server answers" in wrong.stderr, wrong.stderr[-2000:]
    for done in (untrusted, trusted, wrong):
        assert PASSWORD not in done.stdout + done.stderr


def _ca_config(folder: Path, ca_file: Path) -> Path:
    """A config file that trusts `ca_file` for the bus."""
    config = folder / "reer.toml"
    config.write_text(f'[bus]\ntls_ca = "{ca_file}"\n')
    return config
