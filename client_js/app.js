// The live-caption page: microphone or upload in, captions while it is spoken, then the final
// transcript with speakers, versions, search, a synchronised player and exports.
import { StreamscribeClient, authHeaders, followSession, uploadFile, withToken } from "./streamscribe.js";

const $ = (id) => document.getElementById(id);
const ui = {
  transport: $("transport"), record: $("record"), file: $("file"), status: $("status"),
  progress: $("progress"), stage: $("progress-stage"), detail: $("progress-detail"), fill: $("progress-fill"),
  finals: $("finals"), partial: $("partial"), live: $("live"), announcer: $("announcer"),
  section: $("transcript-section"), version: $("version"), search: $("search"), matches: $("matches"),
  player: $("player"), transcript: $("transcript"),
  historySection: $("history-section"), history: $("history"),
  credential: $("credential"), credentialValue: $("credential-value"),
};
const ANNOUNCED_LINES = 20;
const HISTORY_KEY = "streamscribe.transcripts";
const HISTORY_KEPT = 20;

let client = null;
let media = null;
let transcriptId = null;
let words = [];          // the shown version's words, in time order, with their elements
let matchIndex = -1;

// ---- a server that asks for a credential --------------------------------------------------------

const KEY_PREFIX = "sk-ss-";
const TOKEN_TTL_S = 600;
let needsCredential = false;
let credential = null;   // what was typed in: a key (only used to ask for tokens) or a token
let minted = null;       // {token, expiresAt} got with the key

/** A token for the next request: the typed-in one, or one asked for with the typed-in key. */
async function freshToken() {
  if (!credential || !credential.startsWith(KEY_PREFIX)) return credential;
  if (minted && minted.expiresAt - Date.now() / 1000 > 30) return minted.token;
  const response = await fetch("/v1/tokens", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${credential}` },
    body: JSON.stringify({ ttl_s: TOKEN_TTL_S }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error.message);
  minted = { token: answer.token, expiresAt: answer.expires_at };
  return minted.token;
}

/** What the SDK and requests are given: a token source where the server needs one. */
const tokenSource = () => (needsCredential ? freshToken : undefined);

async function checkCredential() {
  const response = await fetch("/v1/transcripts?limit=1", { headers: await authHeaders(tokenSource()) });
  needsCredential = needsCredential || response.status === 401;
  const missing = response.status === 401;
  ui.credential.hidden = !missing;
  ui.record.disabled = missing;
  ui.file.disabled = missing;
  if (missing) setStatus(credential ? "That key or token was refused." : "This server needs an API key or a token.");
  return !missing;
}

ui.credential.addEventListener("submit", async (event) => {
  event.preventDefault();
  credential = ui.credentialValue.value.trim();
  minted = null;
  ui.credentialValue.value = "";
  try {
    if (await checkCredential()) {
      setStatus("Ready. Start the microphone or upload a recording.");
      if (opened) openTranscript(opened[1]);
    }
  } catch (error) {
    setStatus(`That key or token was refused: ${error.message}`);
  }
});

// ---- live captions ------------------------------------------------------------------------------

function resetLive() {
  ui.finals.textContent = "";
  ui.partial.textContent = "";
  ui.announcer.textContent = "";
  ui.section.hidden = true;
}

function onEvent(event) {
  switch (event.type) {
    case "ready":
      transcriptId = event.transcript_id;
      if (transcriptId) remember(transcriptId, `Live, ${new Date().toLocaleString()}`);
      break;
    case "partial":
      ui.partial.textContent = event.words.map((w) => w.text).join(" ");
      break;
    case "final": {
      const text = event.words.map((w) => w.text).join(" ");
      ui.finals.append((ui.finals.textContent ? " " : "") + text);
      ui.partial.textContent = "";
      announce(text);
      ui.live.scrollTop = ui.live.scrollHeight;
      break;
    }
    case "progress":
      showProgress("Transcribing", event.processed_s, event.total_s);
      break;
    case "finalizing":
      showProgress("Second pass: speakers and corrections", event.processed_s, event.total_s, event.progress);
      break;
    case "error":
      setStatus(`Error ${event.code}: ${event.message}`);
      break;
    case "transcript_ready":
      ui.progress.hidden = true;
      setStatus("The final transcript is ready.");
      loadTranscript(event.transcript_id, event.version);
      break;
    case "closed":
      stopMicrophone();
      if (ui.section.hidden && transcriptId) loadTranscript(transcriptId);
      break;
  }
}

function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  ui.announcer.append(line);
  while (ui.announcer.childElementCount > ANNOUNCED_LINES) ui.announcer.firstElementChild.remove();
}

function showProgress(stage, processed, total, fraction) {
  ui.progress.hidden = false;
  const share = fraction ?? (total ? processed / total : 0);
  ui.stage.textContent = stage;
  ui.detail.textContent = total ? `${clock(processed)} / ${clock(total)}` : clock(processed || 0);
  ui.fill.style.width = `${Math.round(Math.min(1, share) * 100)}%`;
}

function setStatus(text) {
  ui.status.textContent = text;
}

// ---- microphone ---------------------------------------------------------------------------------

async function startMicrophone() {
  resetLive();
  transcriptId = null;
  setStatus("Asking for the microphone…");
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
  } catch (error) {
    setStatus(`The microphone is not available: ${error.message}`);
    return;
  }
  client = new StreamscribeClient({ transport: ui.transport.value, token: tokenSource() });
  client.addEventListener("event", (e) => onEvent(e.detail));
  client.addEventListener("state", (e) => {
    if (e.detail === "open") setStatus("Listening. Speak, and the words appear as they are said.");
    if (e.detail === "reconnecting") setStatus("Connection lost; reconnecting…");
  });
  client.addEventListener("resumed", () => setStatus("Back online: the stream goes on where it was."));
  setRecording(true);
  try {
    await client.start(media);
  } catch (error) {
    setStatus(`Could not connect: ${error.message}`);
    stopMicrophone();
  }
}

function stopRecording() {
  if (client) client.stop();
  setRecording(false);
  setStatus("Finishing: the last words, then the final transcript…");
}

function stopMicrophone() {
  if (media) media.getTracks().forEach((track) => track.stop());
  media = null;
  setRecording(false);
}

function setRecording(on) {
  ui.record.setAttribute("aria-pressed", String(on));
  ui.record.textContent = on ? "Stop" : "Start microphone";
  ui.transport.disabled = on;
}

ui.record.addEventListener("click", () => {
  if (ui.record.getAttribute("aria-pressed") === "true") stopRecording();
  else startMicrophone();
});

// ---- upload -------------------------------------------------------------------------------------

ui.file.addEventListener("change", async () => {
  const file = ui.file.files[0];
  if (!file) return;
  resetLive();
  setStatus(`Uploading ${file.name}…`);
  try {
    const accepted = await uploadFile(file, { token: tokenSource() });
    transcriptId = accepted.transcript_id;
    remember(transcriptId, file.name);
    setStatus(`Transcribing ${file.name}…`);
    showProgress("Transcribing", 0, accepted.file.duration_s);
    followSession(accepted.session_id, onEvent, { token: tokenSource() });
  } catch (error) {
    setStatus(`${file.name} was not accepted: ${error.message}`);
  }
  ui.file.value = "";
});

// ---- the final transcript -----------------------------------------------------------------------

async function loadTranscript(id, version) {
  const listing = await getJson(`/v1/transcripts/${id}/versions`);
  history.replaceState(null, "", `#transcript=${id}`);  // a reload opens it again
  ui.version.replaceChildren(
    ...listing.versions.slice().reverse().map((v) => new Option(`v${v.version}${v.parent ? "" : " (live)"}`, v.version))
  );
  ui.version.value = String(version ?? listing.versions[listing.versions.length - 1].version);
  ui.player.hidden = !listing.audio_kept;
  if (listing.audio_kept) ui.player.src = await withToken(`/v1/transcripts/${id}/audio`, tokenSource());
  await showVersion(id, Number(ui.version.value));
}

async function showVersion(id, version) {
  const transcript = await getJson(`/v1/transcripts/${id}/versions/${version}`);
  const speakers = new Map();
  words = [];
  const paragraphs = transcript.segments.map((segment) => {
    if (!speakers.has(segment.speaker)) speakers.set(segment.speaker, speakers.size);
    const block = document.createElement("div");
    block.className = `paragraph speaker-${speakers.get(segment.speaker) % 6}`;
    const who = document.createElement("div");
    who.className = "speaker";
    who.textContent = segment.speaker || "";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = clock(segment.start);
    who.append(time);
    const text = document.createElement("p");
    text.style.margin = "0";
    for (const line of segment.lines) {
      for (const word of line.words) {
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = word.text;
        span.dataset.start = word.start;
        words.push({ ...word, element: span });
        text.append(span, " ");
      }
    }
    block.append(who, text);
    return block;
  });
  ui.transcript.replaceChildren(...paragraphs);
  ui.transcript.dataset.version = String(version);
  for (const format of ["txt", "srt", "vtt", "json"]) {
    const link = $(`export-${format}`);
    link.href = `/v1/transcripts/${id}/versions/${version}?format=${format}`;
    link.download = `transcript-v${version}.${format}`;
  }
  ui.section.hidden = false;
  highlightMatches();
}

// A link cannot send a header: where the server needs a credential, fetch the file with it.
for (const format of ["txt", "srt", "vtt", "json"]) {
  $(`export-${format}`).addEventListener("click", async (event) => {
    if (!needsCredential) return;
    event.preventDefault();
    const link = event.currentTarget;
    const response = await fetch(link.href, { headers: await authHeaders(tokenSource()) });
    if (!response.ok) return setStatus(`The export failed (${response.status}).`);
    const saved = document.createElement("a");
    saved.href = URL.createObjectURL(await response.blob());
    saved.download = link.download;
    saved.click();
    setTimeout(() => URL.revokeObjectURL(saved.href), 60_000);
  });
}

ui.version.addEventListener("change", () => showVersion(transcriptId, Number(ui.version.value)));

ui.transcript.addEventListener("click", (event) => {
  const start = event.target.dataset && event.target.dataset.start;
  if (start === undefined || ui.player.hidden) return;
  ui.player.currentTime = Number(start);
  ui.player.play();
});

let current = null;
ui.player.addEventListener("timeupdate", () => {
  const time = ui.player.currentTime;
  let low = 0, high = words.length - 1, found = null;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (words[middle].start <= time) { found = words[middle]; low = middle + 1; } else high = middle - 1;
  }
  const word = found && time < found.end + 0.3 ? found : null;
  if (word === current) return;
  if (current) current.element.classList.remove("now");
  current = word;
  if (current) current.element.classList.add("now");
});

function highlightMatches() {
  const query = normalise(ui.search.value);
  let count = 0;
  for (const word of words) {
    const hit = query !== "" && normalise(word.text).includes(query);
    word.element.classList.toggle("match", hit);
    count += hit;
  }
  matchIndex = -1;
  ui.matches.textContent = query ? `${count} match${count === 1 ? "" : "es"}` : "";
}

ui.search.addEventListener("input", highlightMatches);
ui.search.addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  const hits = words.filter((w) => w.element.classList.contains("match"));
  if (!hits.length) return;
  matchIndex = (matchIndex + 1) % hits.length;
  hits[matchIndex].element.scrollIntoView({ block: "center", behavior: "smooth" });
  if (!ui.player.hidden) ui.player.currentTime = hits[matchIndex].start;
});

// ---- the page's own list of the transcripts it made (localStorage, by id) ---------------------------

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY)) || [];
  } catch {
    return [];
  }
}

function remember(id, name) {
  const known = remembered();
  const entry = known.find((other) => other.id === id) || { id, name };  // an upload keeps its file name
  const kept = [entry, ...known.filter((other) => other.id !== id)].slice(0, HISTORY_KEPT);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(kept));
  showHistory();
}

function showHistory() {
  const entries = remembered();
  ui.historySection.hidden = entries.length === 0;
  ui.history.replaceChildren(...entries.map((entry) => {
    const open = document.createElement("button");
    open.type = "button";
    open.className = "button";
    open.dataset.id = entry.id;
    open.textContent = entry.name;
    const item = document.createElement("li");
    item.append(open);
    return item;
  }));
}

async function openTranscript(id) {
  transcriptId = id;
  try {
    await loadTranscript(id);
    setStatus("Showing a transcript you made earlier.");
  } catch (error) {
    setStatus(`That transcript is no longer on the server (${error.message}).`);
  }
}

ui.history.addEventListener("click", (event) => {
  const id = event.target.dataset && event.target.dataset.id;
  if (id) openTranscript(id);
});

showHistory();
const opened = /^#transcript=([0-9a-f]+)$/.exec(location.hash);
checkCredential().then((ready) => {
  if (ready && opened) openTranscript(opened[1]);
});

// ---- helpers ------------------------------------------------------------------------------------

async function getJson(path) {
  const response = await fetch(path, { headers: await authHeaders(tokenSource()) });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function normalise(text) {
  return text.toLowerCase().replace(/[^\p{L}\p{N}']+/gu, "");
}

function clock(seconds) {
  const whole = Math.floor(seconds || 0);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}
