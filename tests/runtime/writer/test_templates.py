"""Writing templates: each compiled, stored and promoted on its own; added from config.toml and from
Python; chosen by `generate --template` and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reer_runtime
from bus.messages import GenerateRequested, OptimizeRequested
from runtime.config import load_settings
from runtime.errors import ConfigError, UsageError
from runtime.records import GenerateEvent, OptimizeEvent
from tests.conftest import RunDaemon
from tests.runtime.writer.test_writer import POSTS, generated, run_actors, scripted_writer

pytestmark = pytest.mark.anyio

REPLIED = [f"Original post {i}: what is your backup routine?" for i in range(5)]


async def test_each_template_is_compiled_stored_and_promoted_on_its_own(tmp_path: Path) -> None:
    writer = scripted_writer()
    texts = {"post_replied_to": "Nobody tests their backups. Change my mind."}
    messages = [
        OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap", template="reply")),
        OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap", template="repurpose")),
        GenerateRequested(request_id="r1", request=GenerateEvent(topic="backups", n=1, template="reply", texts=texts)),
        GenerateRequested(request_id="r2", request=GenerateEvent(topic="backups", n=1)),
    ]
    drafts, programs = await run_actors(tmp_path, writer, messages, contexts=REPLIED)
    assert [(p.template, p.version) for p in programs] == [("reply", 1), ("repurpose", 2)]
    with_context = {f"t{i}" for i in range(len(REPLIED))}
    for program in programs:  # only the posts that carry the text they answer teach these two
        assert set(program.train_trace_ids + program.val_trace_ids) == with_context
    reply, post = drafts
    assert reply.request.template == "reply" and reply.program_version == (1 if programs[0].promoted else 0)
    assert post.request.template == "content_generation" and post.program_version == 0  # never compiled
    # the reply's writing step read the post replied to and the reply's instructions, and made no plan
    asked = [c for c in generated(writer) if texts["post_replied_to"] in c.messages[-1].content]
    assert asked and all("[[ ## plan ## ]]" not in c.prefill for c in asked)
    assert "Write a reply to the post" in asked[-1].messages[0].content


async def test_a_template_with_too_few_traces_to_learn_from_is_refused(tmp_path: Path) -> None:
    optimize = OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap", template="reply"))
    _, programs = await run_actors(tmp_path, scripted_writer(), [optimize], contexts=REPLIED[:3], refusals=1)
    assert programs == []
    dead = (tmp_path / "dead.jsonl").read_text()
    assert f"not compiling reply: 3 traces of {len(POSTS)} (a template that reads post_replied_to" in dead


def test_templates_from_config_toml_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[templates]]\nname = "launch"\ninstructions = "Announce it."\ninputs = ["notes"]\n')
    templates = load_settings(tmp_path).writing_templates()
    assert list(templates) == ["content_generation", "thread", "reply", "repurpose", "launch"]
    assert templates["launch"].inputs == ("notes",) and templates["launch"].plan
    config.write_text('[[templates]]\nname = "reply"\ninstructions = "Mine."\n')
    with pytest.raises(ConfigError, match="template 'reply' is defined twice"):
        load_settings(tmp_path)
    config.write_text('[[templates]]\nname = "x"\ninstructions = "Go."\ninputs = ["post"]\n')
    with pytest.raises(ConfigError, match=r"templates\.0\.inputs: .*not brief, plan or post"):
        load_settings(tmp_path)


async def test_the_api_adds_and_selects_templates(tmp_path: Path) -> None:
    launch = reer_runtime.Template(name="launch", instructions="Announce the product.", inputs=("notes",), plan=False)
    async with reer_runtime.Runtime(tmp_path, provider="dummy://", templates=[launch]) as rt:
        assert "launch" in rt.templates() and "content_generation" in rt.templates()
        drafts = await rt.generate("a link checker", n=1, template="launch", texts={"notes": "checks dead links"})
        assert {d.request.template for d in drafts} == {"launch"}
        assert drafts[0].request.texts == {"notes": "checks dead links"} and drafts[0].plan == ""
        with pytest.raises(UsageError, match="template launch needs the text 'notes'"):
            await rt.generate("a link checker", template="launch")
        with pytest.raises(UsageError, match="no template 'launches'; the templates are content_generation, "):
            await rt.generate("a link checker", template="launches")
        with pytest.raises(UsageError, match="template thread writes threads"):
            await rt.generate("a link checker", template="thread")
        with pytest.raises(UsageError, match="no template 'nope'"):
            await rt.optimize(template="nope")


def test_generate_and_list_templates_from_the_command_line(tmp_path: Path, run_daemon: RunDaemon) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        '[[templates]]\nname = "launch"\ndescription = "a launch"\ninstructions = "Announce it."\ninputs = ["notes"]\n'
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("It checks dead links.\nIt is free.", encoding="utf-8")
    listed = run_daemon("templates")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in listed.stdout.splitlines()[1:]}
    assert rows["launch"] == ["uncompiled", "brief,"] and rows["reply"][0] == "uncompiled"
    drafted = run_daemon(
        "generate", "--topic", "link checks", "-n", "1", "--template", "launch", "--text", f"notes=@{notes}"
    )
    assert drafted.returncode == 0, drafted.stderr
    (draft,) = [json.loads(line) for line in (data / "drafts.jsonl").read_text().splitlines()][:1]
    assert draft["request"]["template"] == "launch" and draft["request"]["texts"] == {"notes": notes.read_text()}
    refused = run_daemon("generate", "--topic", "link checks", "--template", "launch", "--text", "notes=@/dev/stdin")
    assert refused.returncode == 2 and "is not a regular file" in refused.stderr
    unknown = run_daemon("optimize", "--template", "launches")
    assert unknown.returncode == 2 and "no template 'launches'" in unknown.stderr
