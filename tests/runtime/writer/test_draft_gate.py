"""The draft gate: each kind of junk the packaged model was seen to write is refused with its reason,
and posts a person could publish pass."""

from __future__ import annotations

import pytest

from runtime.writer.draft_gate import refusal

TOPIC = "why we test backups by restoring them"

JUNK = [
    # DSPy's field markers echoed back and mangled (the first two drafts)
    ("[## plan ##]\n\n[## plan #Title ]\n{plan}\n\n[## [BMP] [topic] [title]", "prompt markup in the draft: '[##'"),
    ("[#mystère# ]]\n[#[##upmanagement# ]]\nbackups", "prompt markup in the draft: '# ]]'"),
    ("Terrific: Topic: Why we test backups by restoring them.", "prompt markup in the draft: 'Topic:'"),
    ("Plan:\n\nThe answer must be: how do we protect backups from disasters?", "prompt markup in the draft: 'Plan:'"),
    # a template full of slots (the third draft)
    (
        "**This is the [powerpoint]. I am writing my [blog post] for you, which is [insert image].",
        "a placeholder left to fill: '[powerpoint]'",
    ),
    ("Restore your backups, {name}, before you need them.", "a placeholder left to fill: '{name}'"),
    ("Read how we restore backups: <link to the runbook>", "a placeholder left to fill: '<link to the runbook>'"),
    # the model answering the request instead of writing the post (seen in benchmarks/drafts.py)
    (
        "Sure, I'll do that. A post about using one metric every morning.",
        "an answer to the request, not the post: 'Sure,'",
    ),
    (
        "If you're looking to write a long post, here's a more concise version:\n\nThe Importance of Backups:",
        'an answer to the request, not the post: "If you\'re looking to"',
    ),
    (
        "Here's a short post about restoring backups: test them.",
        'an answer to the request, not the post: "Here\'s a short post"',
    ),
    # loops
    ("Backups matter.\nBackups matter.\nBackups matter.", "a line repeated 3 times: 'backups matter.'"),
    ("We test backups backups backups backups every week.", "a word repeated 4 times in a row: 'backups'"),
    (
        "The first step is to ensure your backups are ready to take the next step. The second step is to make "
        "sure you're ready to take the next step. The third step is to take the next step.",
        "a phrase repeated 3 times: 'to take the next'",
    ),
    # off the topic (a draft the packaged model wrote for it)
    (
        "When I was a kid, I used to love to play with Lego. The only thing that made me happy was when I "
        "could build something with my own hands.",
        "no word of the topic (backup, restor, test, or a word of the same stem)",
    ),
    # another language than the brief's
    (
        "Pourquoi nous testons nos sauvegardes en les restaurant : une sauvegarde jamais restaurée n'est qu'un "
        "espoir, pas une sauvegarde.",
        "written in fr, the topic is in en (ISO 639-1 codes)",
    ),
]


@pytest.mark.parametrize(("draft", "reason"), JUNK, ids=[reason.split(":")[0] for _, reason in JUNK])
def test_junk_is_refused_with_its_reason(draft: str, reason: str) -> None:
    assert refusal(draft, TOPIC) == reason


@pytest.mark.parametrize(
    ("draft", "topic"),
    [
        ("Backups you never restored are only hopes. Test a restore this week. What did yours teach you?", TOPIC),
        ("Our restore drill found 2 bad backups. Read the runbook [here](https://example.com/runbook).", TOPIC),
        ("I <3 restore tests. Ha ha, they saved us twice this year.", TOPIC),
        ("Every Friday we restore one backup at random. No, really: every Friday.", TOPIC),
        (
            "Une sauvegarde que personne n'a jamais restaurée n'est qu'un espoir. Testez vos sauvegardes.",
            "pourquoi tester les sauvegardes en les restaurant",
        ),
        ("Shipping log 12: we cut onboarding to 4 steps.", "what it is"),
        ("Here's what a restore drill taught us: the backup was fine, the runbook was not.", TOPIC),
        ("Sure enough, the backup we never restored was the one that failed.", TOPIC),  # no content word in the topic
    ],
)
def test_posts_a_person_could_publish_pass(draft: str, topic: str) -> None:
    assert refusal(draft, topic) is None
