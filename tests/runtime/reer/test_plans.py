"""The pieces the search is built from, at their edges: the brief's length classes, the prompts'
messages, and the measures that tell a plan from a copy of its post."""

from __future__ import annotations

import pytest

from runtime.reer import prompts
from runtime.reer.brief import derive_brief
from runtime.reer.plans import content_overlap, content_words, leak_reason, longest_copied_run, overlap
from tests.helpers import make_post


@pytest.mark.parametrize(("size", "length"), [(99, "short"), (100, "medium"), (199, "medium"), (200, "long")])
def test_a_brief_names_the_length_class_of_its_post(size: int, length: str) -> None:
    assert derive_brief(make_post(1, "w" * size)).length == length


def test_a_brief_lists_the_features_in_one_sentence() -> None:
    brief = derive_brief(make_post(1, "Shipped 3 fixes today. Would you try them?", author="maker"))
    assert brief.text == (
        "Write a short post for x (at most 280 characters) for the audience of @maker."
        " The post asks the reader a question, uses numbers."
    )


def test_the_prompts_show_the_brief_and_the_post_each_in_its_place() -> None:
    brief, post, plan = "Write a short post.", "We shipped.", "Angle: I will open with the launch."
    for messages in (prompts.initial_plan(brief, post), prompts.rewrite_section(brief, post, plan, "Angle")):
        system, user = messages
        assert (system.role, system.content, user.role) == ("system", prompts.SYSTEM, "user")
        assert user.content.startswith(f"Brief: {brief}\n\n") and prompts.fence(post) in user.content
    assert (
        f"A plan for writing it:\n{plan}\n\nWrite an improved Angle line"
        in prompts.rewrite_section(brief, post, plan, "Angle")[1].content
    )
    system, user = prompts.task(brief)
    assert (system.role, system.content, user.role) == ("system", prompts.WRITER, "user")
    assert brief in user.content


@pytest.mark.parametrize(
    ("plan", "post", "run"),
    [
        ("we shipped it", "we shipped it", 3),
        ("first", "first words here", 1),  # a match at the post's first word
        ("here", "first words here", 1),  # and at its last
        ("x words here y", "first words here", 2),
        ("nothing alike", "first words here", 0),
        ("a b c a b c d", "b c d e", 3),
        ("z x", "x y z", 1),  # the post's last word then its first is no run
        ("p q", "q q", 1),  # nor the plan's last word then its first
    ],
)
def test_the_longest_copied_run_counts_consecutive_post_words(plan: str, post: str, run: int) -> None:
    assert longest_copied_run(plan, post) == run


def test_overlap_is_the_share_of_the_posts_word_trigrams() -> None:
    assert overlap("we ship code", "we ship code") == 1.0  # a post of one trigram
    assert overlap("we ship code", "we ship code daily") == 0.5  # one of its two trigrams
    assert overlap("anything", "hi there") == 0.0  # a post too short for a trigram
    assert content_overlap("anything", "the and of") == 0.0  # a post of function words only


def test_content_words_keep_two_letter_words_but_not_single_letters() -> None:
    assert content_words("ai ux x y 42 the") == {"ai", "ux"}


def test_each_leak_guard_fires_at_its_limit() -> None:
    post = "alpha beta gamma delta epsilon zeta eta theta"
    # six post words in a row copy it; five do not (the other guards turned off)
    assert (
        leak_reason("alpha beta gamma delta epsilon zeta", post, 1.0, 6, 1.0)
        == "copies 6 consecutive words of the post"
    )
    assert leak_reason("alpha beta gamma delta epsilon", post, 1.0, 6, 1.0) is None
    # trigram share: over the limit leaks, at it does not
    short = "one two three four"  # two trigrams
    assert leak_reason("one two three", short, 0.5, 9, 1.0) is None
    assert leak_reason("one two three", short, 0.4, 9, 1.0) == "shares 50% of the post's word 3-grams (limit 40%)"
    # content words: a post of exactly six is judged; naming half of them is at the limit
    six = "apples bridges candles dragons engines forests"
    assert leak_reason("forests then apples then candles", six, 1.0, 9, 0.5) is None
    assert leak_reason("forests apples candles dragons", six, 1.0, 9, 0.5) == (
        "names 67% of the post's content words (limit 50%)"
    )
    assert leak_reason("I will", "the and of", 0.1, 6, 0.5) is None  # no content words: nothing to name
