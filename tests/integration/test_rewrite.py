"""The optional rewrite against an OpenAI-compatible endpoint: a local stand-in server, since no
chat model runs here. Only spelling may change; anything else is refused or reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from streamscribe.finalize.rewrite import RewriteClient
from streamscribe.transcript import Word


def paragraph(text: str) -> list[Word]:
    return [
        Word(id=f"w{i}", text=t, start=i * 0.5, end=i * 0.5 + 0.4, confidence=0.9)
        for i, t in enumerate(text.split())
    ]


@pytest.fixture
async def chat_url() -> AsyncIterator[str]:
    """Answers like a chat model: title-cases the text, or adds a word when asked about cats."""
    seen_auth: list[str] = []

    async def completions(request: web.Request) -> web.Response:
        seen_auth.append(request.headers.get("Authorization", ""))
        body = await request.json()
        text = body["messages"][-1]["content"]
        answer = text + " meow" if "cat" in text else text.capitalize().replace(" i ", " I ") + "."
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": answer}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/v1"
    assert all(auth == "Bearer secret" for auth in seen_auth)
    await runner.cleanup()


async def test_spelling_is_rewritten_and_word_changes_are_refused(chat_url: str) -> None:
    client = RewriteClient(chat_url, "any-model", "secret", timeout_s=5)
    rewritten, warnings = await asyncio.to_thread(
        client.rewrite, [paragraph("so i went home"), paragraph("the cat sat")]
    )
    assert [word.text for word in rewritten[0]] == ["So", "I", "went", "home."]
    assert [word.start for word in rewritten[0]] == [word.start for word in paragraph("so i went home")]
    assert [word.text for word in rewritten[1]] == ["the", "cat", "sat"]
    assert warnings == ["rewrite changed the words of 1 paragraph(s); those were kept"]


async def test_an_unreachable_endpoint_keeps_the_text() -> None:
    client = RewriteClient("http://127.0.0.1:9/v1", "any-model", None, timeout_s=2)
    original = [paragraph("keep me as i am")]
    rewritten, warnings = await asyncio.to_thread(client.rewrite, original)
    assert rewritten == original
    assert warnings and warnings[0].startswith("rewrite failed")
