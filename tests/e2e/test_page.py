"""The live-caption page in real headless Chromium (Debian's, driven by Playwright), its
microphone fed from a testdata WAV: captions over WebRTC and over WebSocket, then the final
version with speakers, versions, search, the player and exports; an upload with progress.
Screenshots go to tests/e2e/artifacts/."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from playwright.async_api import Browser, Page, async_playwright

from streamscribe.asr.engine import Engine
from streamscribe.bench.metrics import word_error_rate
from streamscribe.config import ServerSettings

from ..conftest import speech_file, start_keyed_server, start_server
from ..cut_proxy import CutProxy

pytestmark = pytest.mark.model

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
LIVE_WER_LIMIT = 0.25
"""Live captions over a browser's microphone path (Opus or a 16 kHz AudioWorklet) on tiny.en."""
FINAL_WER_LIMIT = 0.10


@pytest.fixture(scope="module")
async def page_url(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A real server with the second pass on and the audio kept (the page plays it)."""
    served = msgspec.structs.replace(
        settings,
        data_dir=tmp_path_factory.mktemp("page"),
        audio_retention_h=float("inf"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True),
    )
    runner, url = await start_server(served, engine)
    yield url
    await runner.cleanup()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: tests/run.sh installs Debian's chromium")
    speech = speech_file("jfk/jfk.wav")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech}%noloop",
            ],
        )  # fmt: skip
        yield launched
        await launched.close()


async def open_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url)
    return page


async def live_words_when_done(page: Page, speech_s: float, timeout_s: float = 40.0) -> str:
    """The live finals once the speech has been played and nothing has changed for 1.5 s."""
    await asyncio.sleep(speech_s)
    previous, quiet_s = None, 0.0
    for _ in range(int(timeout_s * 10)):
        finals = (await page.text_content("#finals")) or ""
        partial = (await page.text_content("#partial")) or ""
        quiet_s = quiet_s + 0.1 if finals == previous and not partial else 0.0
        if quiet_s >= 1.5:
            break
        previous = finals
        await asyncio.sleep(0.1)
    return previous or ""


async def final_text(page: Page) -> str:
    await page.wait_for_selector("#transcript-section:not([hidden]) .word", timeout=60_000)
    return " ".join(await page.locator("#transcript .word").all_text_contents())


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_live_captions_then_the_final_version(
    browser: Browser, page_url: str, jfk: tuple[object, str], transport: str
) -> None:
    _, reference = jfk
    page = await open_page(browser, page_url)
    await page.select_option("#transport", transport)
    await page.click("#record")
    await page.wait_for_selector('#record[aria-pressed="true"]')
    live = await live_words_when_done(page, speech_s=11.0)
    announced = " ".join(await page.locator("#announcer p").all_text_contents())
    await page.click("#record")
    final = await final_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"live-{transport}.png", full_page=True)
    assert word_error_rate(reference, live) <= LIVE_WER_LIMIT, live
    assert announced == live, "every final, and only finals, go to the ARIA live region"
    assert word_error_rate(reference, final) <= FINAL_WER_LIMIT, final
    assert await page.text_content("#transcript .speaker") == "Speaker 10:00"
    versions = await page.locator("#version option").all_text_contents()
    assert versions == ["v2", "v1 (live)"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_versions_search_player_and_exports(
    browser: Browser, page_url: str, jfk: tuple[object, str]
) -> None:
    page = await open_page(browser, page_url)
    await page.set_input_files("#file", speech_file("jfk/jfk.wav"))
    await final_text(page)
    await page.fill("#search", "country")
    assert await page.text_content("#matches") == "2 matches"
    assert await page.locator("#transcript .word.match").count() == 2
    fellow = page.locator("#transcript .word", has_text="fellow")
    start = float(await fellow.get_attribute("data-start") or "nan")
    await fellow.click()
    assert await page.evaluate("document.getElementById('player').currentTime") == pytest.approx(
        start, abs=0.05
    )
    await page.evaluate("document.getElementById('player').dispatchEvent(new Event('timeupdate'))")
    assert await page.locator("#transcript .word.now").all_text_contents() == ["fellow"]
    await page.select_option("#version", "1")
    await page.wait_for_function("document.getElementById('transcript').dataset.version === '1'")
    for extension, pattern in (
        ("txt", r"^And so my fellow"),
        ("srt", r"^1\n00:00:0"),
        ("vtt", r"^WEBVTT"),
        ("json", r"^\{"),
    ):
        href = await page.get_attribute(f"#export-{extension}", "href")
        assert href and href.endswith(f"/versions/1?format={extension}")
        exported = await page.request.get(page_url + href)
        assert exported.ok and re.match(pattern, await exported.text()), (extension, await exported.text())
    audio = await page.request.get(page_url + (await page.get_attribute("#player", "src") or ""))
    assert audio.ok and (await audio.body())[:4] == b"RIFF"


async def test_the_page_keeps_its_transcripts_across_reloads(browser: Browser, page_url: str) -> None:
    page = await open_page(browser, page_url)
    await page.set_input_files("#file", speech_file("jfk/jfk.wav"))
    before = await final_text(page)
    await page.reload()  # the open transcript is in the address: a reload shows it again
    assert await final_text(page) == before
    await page.goto(page_url)  # a fresh visit: the page's own list still has it
    entry = page.locator("#history button", has_text="jfk.wav")
    await entry.click()
    assert await final_text(page) == before
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "history.png", full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_an_upload_shows_progress_then_the_transcript_on_a_phone(
    browser: Browser, page_url: str, media: dict[str, Path], jfk: tuple[object, str]
) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    await page.goto(page_url)
    seen: list[str] = []
    await page.expose_function("noteProgress", lambda stage: seen.append(stage))
    await page.evaluate(
        """new MutationObserver(() => window.noteProgress(document.getElementById('progress-stage').textContent))
             .observe(document.getElementById('progress-stage'), {childList: true, characterData: true, subtree: true})"""
    )
    await page.set_input_files("#file", media["jfk.mp4"])
    final = await final_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "upload-phone.png", full_page=True)
    assert word_error_rate(jfk[1], final) <= FINAL_WER_LIMIT
    assert "Transcribing" in seen and any(stage.startswith("Second pass") for stage in seen)
    assert (await page.text_content("#status")) == "The final transcript is ready."
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing overflows a phone's width"


async def test_the_sdk_reconnects_a_dropped_stream(browser: Browser, page_url: str) -> None:
    """streamscribe.js on its own: a WebSocket that drops mid-stream is reopened as a new session."""
    page = await open_page(browser, page_url)
    outcome = await page.evaluate(
        """async () => {
          const { StreamscribeClient } = await import('/client/streamscribe.js');
          const client = new StreamscribeClient({ transport: 'websocket' });
          const sessions = [], states = [];
          client.addEventListener('ready', (e) => sessions.push(e.detail.session_id));
          client.addEventListener('state', (e) => states.push(e.detail));
          await client.start(await navigator.mediaDevices.getUserMedia({ audio: true }));
          const until = (test) => new Promise((resolve) => {
            const poll = () => (test() ? resolve() : setTimeout(poll, 50));
            poll();
          });
          await until(() => sessions.length === 1);
          client._ws.close(4000, 'network gone');   // as a dropped connection would
          await until(() => sessions.length === 2);
          client.close();
          return { sessions, states };
        }"""
    )
    assert len(set(outcome["sessions"])) == 2, "a new session after the drop"
    assert outcome["states"][:4] == ["connecting", "open", "reconnecting", "open"]


async def test_the_sdk_resumes_a_websocket_the_network_cut(
    browser: Browser, page_url: str, jfk: tuple[object, str]
) -> None:
    """streamscribe.js through a proxy whose connections are cut mid-speech (no close frame, as a
    phone changing networks): the same session goes on ("resumed"), no event twice, the speech
    heard across the cut."""
    async with CutProxy(page_url) as proxy:
        page = await open_page(browser, proxy.url)
        await page.evaluate(
            """async () => {
              const { StreamscribeClient } = await import('/client/streamscribe.js');
              const client = new StreamscribeClient({ transport: 'websocket' });
              window.client = client;
              window.sdk = { events: [], resumed: [], states: [] };
              client.addEventListener('event', (e) => window.sdk.events.push(e.detail));
              client.addEventListener('resumed', (e) => window.sdk.resumed.push(e.detail));
              client.addEventListener('state', (e) => window.sdk.states.push(e.detail));
              await client.start(await navigator.mediaDevices.getUserMedia({ audio: true }));
            }"""
        )
        await page.wait_for_function("window.sdk.events.some((e) => e.type === 'final')", timeout=60_000)
        proxy.cut()
        await page.wait_for_function("window.sdk.resumed.length === 1", timeout=60_000)
        speech_over = "window.sdk.events.some((e) => e.type === 'utterance_end' && e.at > 10.5)"
        await page.wait_for_function(speech_over, timeout=60_000)  # the whole file was played
        await page.evaluate("window.client.stop()")
        await page.wait_for_function("window.sdk.events.some((e) => e.type === 'closed')", timeout=120_000)
        outcome = await page.evaluate("window.sdk")
    events, [resumed] = outcome["events"], outcome["resumed"]
    [ready] = [event for event in events if event["type"] == "ready"]
    assert resumed["session_id"] == ready["session_id"], "the same session went on"
    assert outcome["states"] == ["connecting", "open", "reconnecting", "open", "closed"]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs)), f"an event twice or out of order: {seqs}"
    finals = " ".join(word["text"] for event in events if event["type"] == "final" for word in event["words"])
    assert word_error_rate(jfk[1], finals) <= LIVE_WER_LIMIT, finals


async def test_the_sdk_sends_a_finalize_asked_for_while_reconnecting_after_the_audio_resent(
    browser: Browser, page_url: str
) -> None:
    """streamscribe.js: `finalize()` while a cut WebSocket is being resumed is not lost; the resumed
    connection sends the audio the server missed up to where finalize was asked, then finalize,
    then the audio after it (every message each connection sends is logged)."""
    async with CutProxy(page_url) as proxy:
        page = await open_page(browser, proxy.url)
        await page.evaluate(
            """async () => {
              const { StreamscribeClient } = await import('/client/streamscribe.js');
              const client = new StreamscribeClient({ transport: 'websocket' });
              window.client = client;
              window.sdk = { sent: [], events: [], askedAt: null, resumedAt: null };
              const send = WebSocket.prototype.send;
              WebSocket.prototype.send = function (data) {
                if (!this.sentLog) window.sdk.sent.push((this.sentLog = []));
                this.sentLog.push(typeof data === 'string' ? JSON.parse(data).type : data.byteLength);
                return send.call(this, data);
              };
              client.addEventListener('event', (e) => window.sdk.events.push(e.detail.type));
              client.addEventListener('state', (e) => {
                if (e.detail !== 'reconnecting' || window.sdk.askedAt !== null) return;
                window.sdk.askedAt = -1;
                setTimeout(() => { // before the first try to resume (250 ms): audio taken meanwhile
                  window.sdk.askedIn = client.state;
                  window.sdk.askedAt = client._audio.offsetOf(Infinity); // the audio taken so far
                  client.finalize();
                }, 200);
              });
              client.addEventListener('resumed', (e) => {
                window.sdk.resumedAt = client._audio.offsetOf(e.detail.received_s);
              });
              await client.start(await navigator.mediaDevices.getUserMedia({ audio: true }));
            }"""
        )
        await page.wait_for_function("window.sdk.events.includes('final')", timeout=60_000)
        proxy.cut()
        audio_after_finalize = """(() => {
          const resumed = window.sdk.sent[1] || [];
          const at = resumed.indexOf('finalize');
          return at >= 0 && resumed.slice(at + 1).some((item) => typeof item === 'number');
        })()"""
        await page.wait_for_function(audio_after_finalize, timeout=60_000)
        outcome = await page.evaluate("window.client.close(), window.sdk")
    first, resumed = outcome["sent"]
    assert outcome["askedIn"] == "reconnecting" and "finalize" not in first, "asked for after the cut"
    assert first[0] == "start" and resumed.count("finalize") == 1
    before = resumed[: resumed.index("finalize")]
    assert all(isinstance(item, int) for item in before)
    assert outcome["resumedAt"] + sum(before) == outcome["askedAt"], "finalize at its place in the audio"
    assert outcome["askedAt"] > outcome["resumedAt"], "the audio taken while reconnecting went before it"
    assert "error" not in outcome["events"], outcome["events"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_speakers_are_shown_in_their_own_colours(browser: Browser, page_url: str) -> None:
    page = await open_page(browser, page_url)
    await page.set_input_files("#file", speech_file("conversations/conv2spk_1272_84.wav"))
    await page.wait_for_selector("#transcript-section:not([hidden]) .word", timeout=120_000)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "two-speakers.png", full_page=False)
    labels = await page.evaluate(
        """[...document.querySelectorAll('#transcript .speaker')].map((label) =>
             [label.firstChild.textContent, getComputedStyle(label).color])"""
    )
    colour_of = dict((name, colour) for name, colour in labels)
    assert set(colour_of) == {"Speaker 1", "Speaker 2"}
    assert colour_of["Speaker 1"] != colour_of["Speaker 2"]
    assert all(colour_of[name] == colour for name, colour in labels), "one colour per speaker throughout"


@pytest.fixture(scope="module")
async def keyed_page(
    settings: ServerSettings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, str]]:
    """A server with an API key (the page must ask for it), and the key."""
    served = msgspec.structs.replace(settings, audio_retention_h=float("inf"))
    runner, url, key = await start_keyed_server(
        served, engine, tmp_path_factory.mktemp("keyed-page"), "browser-user"
    )
    yield url, key
    await runner.cleanup()


async def test_the_page_asks_for_a_key_then_streams_and_uploads_with_short_lived_tokens(
    browser: Browser, keyed_page: tuple[str, str], jfk: tuple[object, str]
) -> None:
    url, key = keyed_page
    page = await open_page(browser, url)
    await page.wait_for_selector("#credential:not([hidden])")
    assert await page.is_disabled("#record")
    await page.fill("#credential-value", "sk-ss-not-a-key")
    await page.click("#credential button")
    await page.wait_for_function("document.getElementById('status').textContent.includes('refused')")
    await page.fill("#credential-value", key)
    await page.click("#credential button")
    await page.wait_for_selector("#credential", state="hidden")
    await page.select_option("#transport", "websocket")
    await page.click("#record")
    live = await live_words_when_done(page, speech_s=11.0)
    await page.click("#record")
    assert word_error_rate(jfk[1], live) <= LIVE_WER_LIMIT, live
    await final_text(page)
    await page.set_input_files("#file", speech_file("jfk/jfk.wav"))
    await page.wait_for_function(
        "document.getElementById('status').textContent.includes('final transcript is ready')"
    )
    player_src = await page.get_attribute("#player", "src") or ""
    assert "token=tk-ss-" in player_src and key not in player_src
    assert await page.evaluate("fetch(document.getElementById('player').src).then((r) => r.status)") == 200, (
        "the player's URL token was not taken"
    )
    assert key not in await page.content(), "the key was written into the page"
    assert page.errors == [] or all("401" in error for error in page.errors), page.errors  # type: ignore[attr-defined]
