"""`reer-runtime providers` lists what this machine can use, and whether each can score."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RunDaemon
from tests.openai_server import FakeServer, serving


def test_providers_lists_the_packaged_model_a_server_and_cloud_keys(tmp_path: Path, run_daemon: RunDaemon) -> None:
    with serving(FakeServer(public_models=True)) as server:
        env = {"REER_GENERATOR": server.uri(), "OPENAI_API_KEY": "sk-test-not-shown", "ANTHROPIC_API_KEY": ""}
        listed = run_daemon("providers", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "score+generate" in rows["mlx://smollm2-135m"] and "the default" in rows["mlx://smollm2-135m"]
    assert any(d in rows["mlx://smollm2-135m"] for d in ("CPU", "Metal GPU", "CUDA GPU"))
    assert "a server answering (configured)" in rows[server.uri()]
    assert "generate only" in rows["dspy://openai/gpt-4o-mini"]
    assert not any(uri.startswith("dspy://anthropic") for uri in rows)  # an empty key is no key
    assert "sk-test-not-shown" not in listed.stdout
    gone = run_daemon("providers", env={"REER_GENERATOR": server.uri(), "OPENAI_API_KEY": ""})
    assert server.uri() not in gone.stdout and not [u for u in gone.stdout.split() if u.startswith("dspy://")]
    validated = run_daemon("validate", env={"OPENAI_API_KEY": "x"})
    assert "available: dspy://openai/gpt-4o-mini (generates only)" in validated.stdout
