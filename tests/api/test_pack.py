"""The pack's usage examples, as its integration summary writes them, with only the imports and
the model URIs changed: `dummy://`, a provider that always fails, and the packaged model once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reer_runtime.pack import (
    create_dspy_pipeline,
    create_mining_service,
    get_social_media_templates,
    registry,
)

pytestmark = pytest.mark.anyio

DEAD = "fault://?base=dummy://&fatal=1"
"""A provider whose every call fails (a non-retryable 400): a fallback must take over."""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples' relative paths land in tmp_path; the data dir's models default to dummy://."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REER_GENERATOR", "dummy://")
    monkeypatch.setenv("REER_SCORER", "dummy://")
    return tmp_path


async def test_the_mining_service_example(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = {"topic": "productivity", "style": "tip", "length": 280, "thread_size": 1}

    mining_service = create_mining_service(trace_store_path="traces.jsonl")
    await mining_service.initialize()
    trace_id = await mining_service.extract_and_store(
        source_post_id="post_001",
        content="Amazing productivity tip!",
        seed_params={"topic": "productivity", "style": "tip", "length": 280, "thread_size": 1},
    )
    traces = await mining_service.query_traces(min_score=0.7, limit=10)
    stats = await mining_service.get_performance_stats()
    print(f"Success rate: {stats['success_rate']:.2%}")
    print(f"Total traces: {stats['trace_store_stats']['total_traces']}")

    async with mining_service.trace_context("content_extraction") as context_id:
        result = await mining_service.extract_and_store(
            source_post_id="post_123", content="Content to analyze", seed_params=params, trace_id=context_id
        )
    await mining_service.close()

    stored = [json.loads(line) for line in (in_tmp / "traces.jsonl").read_text().splitlines()]
    assert [t["trace_id"] for t in stored] == [trace_id, result]
    assert [t["post"]["id"] for t in stored] == ["post_001", "post_123"]
    assert [t.trace_id for t in traces] == [trace_id]  # a lone post ranks 1.0 among its author's
    assert stored[1]["otel_trace_id"] == context_id  # mined inside the context's trace
    out = capsys.readouterr().out
    assert "Success rate: 100.00%" in out and "Total traces: 1" in out


async def test_the_registry_example_falls_back_past_a_dead_provider(in_tmp: Path) -> None:
    result = await registry.route_generate(DEAD, prompt="Generate content", fallback_uris=[DEAD, "dummy://fallback"])
    assert result.provider == "dummy://fallback" and result.text
    await registry.aclose()


async def test_the_registry_example_on_the_packaged_model(in_tmp: Path) -> None:
    result = await registry.route_generate(
        "mlx://smollm2-135m", prompt="Generate content", fallback_uris=[DEAD, "dummy://fallback"]
    )
    assert result.provider == "mlx://smollm2-135m" and result.text.strip()
    await registry.aclose()


async def test_the_dspy_pipeline_example(in_tmp: Path) -> None:
    pipeline = create_dspy_pipeline(primary_provider_uri=DEAD, fallback_provider_uris=[DEAD, "dummy://test-model"])

    templates = get_social_media_templates()
    for template in templates.values():
        pipeline.register_template(template)

    result = await pipeline.execute_pipeline(
        template_name="content_generation",
        inputs={"topic": "AI development", "style": "educational", "target_audience": "developers"},
    )
    pipeline_metrics = pipeline.get_metrics()
    print(f"Pipelines executed: {pipeline_metrics['pipeline_metrics']['pipelines_executed']}")

    assert result["post"].strip() and set(result) == {"plan", "post"}
    assert pipeline_metrics["pipeline_metrics"]["pipelines_executed"] == 1
    assert {"content_generation", "thread", "reply", "repurpose"} <= set(pipeline_metrics["templates"])
    with pytest.raises(Exception, match="no template 'nope'"):
        await pipeline.execute_pipeline(template_name="nope", inputs={"topic": "x"})
    await pipeline.aclose()
