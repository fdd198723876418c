"""The X archive: `tweets.js` (`window.YTD.tweets.part0 = [...]`), alone or in the unpacked archive folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime.errors import InputError
from runtime.inputs.common import RowError, count, make_post
from runtime.records import Platform, PostEvent, Rejection

PREFIX = "window.YTD."


def looks_like(head: str) -> bool:
    return head.lstrip().startswith(PREFIX)


def _payload(text: str) -> Any:
    """The JSON after `window.YTD.<name>.partN = `."""
    if not looks_like(text):
        raise InputError(f"not an X archive file: it does not start with {PREFIX}")
    return json.loads(text[text.index("=") + 1 :])


def is_archive(folder: Path) -> bool:
    """Whether `folder` is an unpacked X archive (or its `data` folder): it holds `tweets.js`."""
    return bool(_tweet_files(_data(folder)))


def _data(folder: Path) -> Path:
    """The archive's `data` folder (`folder` itself when it is that folder)."""
    return folder / "data" if (folder / "data").is_dir() else folder


def _tweet_files(data: Path) -> list[Path]:
    return sorted(data.glob("tweets.js")) + sorted(data.glob("tweets-part*.js"))


def archive_files(folder: Path) -> tuple[list[Path], str]:
    """The tweet files of an unpacked archive and the account's username (from `account.js`)."""
    data = _data(folder)
    files = _tweet_files(data)
    if not files:
        raise InputError(f"{folder}: no data/tweets.js in this folder; is it an unpacked X archive?")
    username = "me"
    account = data / "account.js"
    if account.is_file():
        entries = _payload(account.read_text(encoding="utf-8"))
        username = entries[0]["account"].get("username", username) if entries else username
    return files, username


def rows(text: str, author: str) -> Iterator[tuple[int, str, PostEvent | Rejection]]:
    """(entry number, raw entry, post or rejection) for each tweet of one file."""
    for number, entry in enumerate(_payload(text), start=1):
        raw = json.dumps(entry, ensure_ascii=False)
        try:
            yield number, raw, _post(entry.get("tweet", entry), author)
        except RowError as exc:
            yield number, raw, exc.rejection
        except (AttributeError, TypeError) as exc:
            yield number, raw, Rejection("invalid event", f"not a tweet entry ({exc})")


def _post(tweet: dict[str, Any], author: str) -> PostEvent:
    text = str(tweet.get("full_text") or tweet.get("text") or "")
    for url in (tweet.get("entities") or {}).get("urls", []):  # keep links as the reader saw them
        if url.get("url") and url.get("expanded_url"):
            text = text.replace(url["url"], url["expanded_url"])
    try:
        created = datetime.strptime(str(tweet.get("created_at")), "%a %b %d %H:%M:%S %z %Y")
    except ValueError:
        raise RowError(
            "invalid time", f"{tweet.get('created_at')!r} is not like Wed Oct 10 20:19:24 +0000 2018"
        ) from None
    if not tweet.get("id_str"):
        raise RowError("invalid event", "the tweet has no id_str")
    return make_post(
        id=str(tweet["id_str"]),
        text=text,
        created_at=created,
        platform=Platform.X,
        author=author,
        likes=count(tweet.get("favorite_count"), "favorite_count"),
        reposts=count(tweet.get("retweet_count"), "retweet_count"),
        replies=count(tweet.get("reply_count"), "reply_count"),
        impressions=None,
        in_reply_to=bool(tweet.get("in_reply_to_status_id_str")),
    )
