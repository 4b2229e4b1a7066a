// streamscribe browser SDK: an ES module, no framework, no build step.
//
//   import { StreamscribeClient } from "/client/streamscribe.js";
//   const client = new StreamscribeClient({ transport: "webrtc" });      // or "websocket"
//   client.addEventListener("final", (e) => console.log(e.detail.words));
//   await client.start(await navigator.mediaDevices.getUserMedia({ audio: true }));
//   ...
//   client.stop();   // then "finalizing", "transcript_ready", "closed"
//
// Where the server asks for a credential, give `token`: a short-lived token your own backend got
// from POST /v1/tokens with its API key (never put the key itself in a page), or a function that
// resolves to a fresh one (called for every connection, so a reconnect after the token expired
// still gets in). It goes in the Authorization header where the browser lets us set one, else as
// ?token= on the URL.
//
// Every server event is dispatched as a CustomEvent named by its `type` ("ready", "partial",
// "final", ...) with the event as `detail`, and also as "event". "state" reports the connection:
// connecting, open, reconnecting, closed. The wire messages are those of GET /v1/schema.
//
// Over WebSocket a connection that drops (no close frame: a network change, a reset) is resumed:
// the same session goes on, the audio the server missed is sent again from a buffer of the last
// 60 s (with a `finalize()` asked for meanwhile at its place in it), and no event is delivered
// twice. "resumed" (detail: the server's `resumed`) says it came back; one not back within 30 s
// ends with an "error" event (code "connection_lost", no seq), as does one the server refuses (its
// own "error"). A server that offers no resume gets a new session.

/**
 * @typedef {{text: string, start: number, end: number, confidence: number}} Word
 * @typedef {{type: "ready", seq: number, session_id: string, protocol: number, model: string,
 *            sample_rate: number, transcript_id: string | null, resume_token?: string | null}} Ready
 * @typedef {{type: "partial" | "final", seq: number, words: Word[]}} Words
 * @typedef {{type: "speech_started" | "utterance_end", seq: number, at: number}} Marker
 * @typedef {{type: "error", seq: number, code: string, message: string}} ErrorEvent
 * @typedef {{type: "progress", seq: number, processed_s: number, total_s: number | null}} Progress
 * @typedef {{type: "finalizing", seq: number, progress: number, processed_s: number | null,
 *            total_s: number | null}} Finalizing
 * @typedef {{type: "transcript_ready", seq: number, transcript_id: string, version: number}} TranscriptReady
 * @typedef {{type: "closed", seq: number, audio_s: number, words: number}} Closed
 * @typedef {{type: "resumed", seq: number, session_id: string, received_s: number}} Resumed
 *   Not a session event: the first message of a resumed connection (dispatched as "resumed" only).
 * @typedef {Ready | Words | Marker | ErrorEvent | Progress | Finalizing | TranscriptReady | Closed} ServerEvent
 */

const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const RESUME_WINDOW_MS = 30000;
const RESUME_FIRST_DELAY_MS = 250;
const RESUME_MAX_DELAY_MS = 4000;
const RESEND_BUFFER_S = 60;

/** @typedef {string | (() => string | Promise<string>) | undefined} TokenSource */

/** The token a source gives now (null without one). @param {TokenSource} source */
export async function currentToken(source) {
  if (!source) return null;
  return typeof source === "function" ? await source() : source;
}

/** Request headers carrying the token (none without one). @param {TokenSource} source */
export async function authHeaders(source) {
  const token = await currentToken(source);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** `url` with ?token= added, for the URLs a browser cannot set headers on. @param {TokenSource} source */
export async function withToken(url, source) {
  const token = await currentToken(source);
  if (!token) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

export class StreamscribeClient extends EventTarget {
  /**
   * @param {{baseUrl?: string, transport?: "webrtc" | "websocket", language?: string,
   *          prompt?: string, reconnect?: boolean, iceServers?: RTCIceServer[],
   *          token?: TokenSource}} [options]
   *   iceServers: STUN/TURN servers for WebRTC; by default the server's own
   *   (GET /v1/webrtc/ice-servers, none unless its operator set some).
   *   token: where the server needs a credential (see the top of this module).
   */
  constructor(options = {}) {
    super();
    this.baseUrl = (options.baseUrl || location.origin).replace(/\/$/, "");
    this.transport = options.transport || "webrtc";
    this.language = options.language;
    this.prompt = options.prompt;
    this.reconnect = options.reconnect !== false;
    this.iceServers = options.iceServers;
    this.token = options.token;
    /** @type {string | null} */ this.sessionId = null;
    /** @type {string | null} */ this.transcriptId = null;
    this.state = "closed";
    this._stopping = false;
    this._attempt = 0;
    this._lastSeq = 0;
  }

  /** Start streaming this microphone stream; resolves once the server has answered. */
  async start(mediaStream) {
    this._media = mediaStream;
    this._stopping = false;
    this._attempt = 0;
    await this._open();
  }

  /** Commit everything heard so far now. Over WebSocket it goes after the audio captured so far,
   * on this connection or, while reconnecting, on the resumed one (again, where the server's copy
   * of the audio ends before it). */
  finalize() {
    const finalize = { type: "finalize" };
    if (this._audio) {
      this._audio.mark(finalize);
      this._sendAudio();
    } else {
      this._send(finalize);
    }
  }

  /** End of stream: the server sends the last finals, then (by default) waits for the stored
   * transcript: "finalizing", "transcript_ready", then "closed". */
  stop({ waitForTranscript = true } = {}) {
    this._stopping = true;
    this._stopAudio();
    const stop = { type: "stop", wait_for_transcript: waitForTranscript };
    if (this._audio) {
      this._audio.stop = stop; // after the audio, on this connection or on a resumed one
      this._sendAudio();
    } else {
      this._send(stop);
    }
  }

  /** Drop the connection at once (the server keeps what it heard). */
  close() {
    this._stopping = true;
    this._teardown();
    this._setState("closed");
  }

  // ---- internals ------------------------------------------------------------------------------

  async _open() {
    this._setState(this._attempt ? "reconnecting" : "connecting");
    this._lastSeq = 0; // a new session: its seq starts again
    if (this.transport === "webrtc") await this._openWebRtc();
    else await this._openWebSocket();
  }

  async _openWebRtc() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers || (await this._serverIceServers()) });
    this._pc = pc;
    const channel = pc.createDataChannel("events");
    this._channel = channel;
    for (const track of this._media.getAudioTracks()) pc.addTrack(track, this._media);
    channel.onmessage = (message) => this._receive(message.data);
    channel.onopen = () => this._setState("open");
    pc.onconnectionstatechange = () => {
      if (pc === this._pc && (pc.connectionState === "failed" || pc.connectionState === "disconnected")) {
        this._dropped();
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const body = { type: "offer", sdp: pc.localDescription.sdp };
    if (this.language) body.language = this.language;
    if (this.prompt) body.prompt = this.prompt;
    const response = await fetch(`${this.baseUrl}/v1/webrtc/offer`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(await authHeaders(this.token)) },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new StreamscribeError(answer.error.code, answer.error.message);
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  async _serverIceServers() {
    try {
      const response = await fetch(`${this.baseUrl}/v1/webrtc/ice-servers`, { headers: await authHeaders(this.token) });
      return response.ok ? (await response.json()).ice_servers : [];
    } catch {
      return []; // a server that names none: host candidates only
    }
  }

  async _openWebSocket() {
    const context = new AudioContext({ sampleRate: 16000 });
    this._context = context;
    await context.resume(); // a context made after an await may start suspended
    await context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    const source = context.createMediaStreamSource(this._media);
    const capture = new AudioWorkletNode(context, "pcm-capture");
    source.connect(capture);
    capture.connect(context.destination); // pulls the graph; the processor outputs silence
    this._audio = new SentAudio(context.sampleRate * 2, RESEND_BUFFER_S);
    this._resumeToken = null;
    const ws = await this._connect(this._streamUrl());
    const start = { type: "start", sample_rate: context.sampleRate, encoding: "pcm_s16le", channels: 1 };
    if (this.language) start.language = this.language;
    if (this.prompt) start.prompt = this.prompt;
    ws.send(JSON.stringify(start));
    const audio = this._audio;
    capture.port.onmessage = (message) => {
      if (this._stopping || audio !== this._audio) return;
      audio.take(message.data);
      this._sendAudio();
    };
    this._attach(ws, 0);
    this._setState("open");
  }

  _streamUrl() {
    return `${this.baseUrl.replace(/^http/, "ws")}/v1/stream`;
  }

  /** A WebSocket opened with the client's token (on the URL: a browser sets no header on it). */
  async _connect(url) {
    const ws = new WebSocket(await withToken(url, this.token));
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new StreamscribeError("connection_failed", "the WebSocket did not open"));
    });
    return ws;
  }

  /** Make `ws` the stream's connection, its audio sent from byte `offset` on. */
  _attach(ws, offset) {
    this._ws = ws;
    this._audio.restartAt(offset);
    ws.onmessage = (message) => this._receive(message.data);
    ws.onclose = (event) => {
      if (ws !== this._ws) return; // after "closed", the session ended normally
      const dropped = !event.wasClean || event.code === 1006; // no close frame: the network
      if (dropped && this._resumeToken) {
        this._resume();
      } else if (this._stopping) {
        this._teardown();
        this._setState("closed");
      } else {
        this._dropped(); // closed before the session said "closed": a new session
      }
    };
    this._sendAudio();
  }

  /** Send what the connection has not had yet: the audio with each `finalize` at its place, then
   * `stop` once asked for. */
  _sendAudio() {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this._audio) return;
    for (const item of this._audio.unsent()) ws.send(item instanceof ArrayBuffer ? item : JSON.stringify(item));
  }

  /** The connection dropped: come back to the same session with the resume token within the
   * window, then send the audio again from what the server holds. */
  async _resume() {
    this._ws = null;
    this._setState("reconnecting");
    const url = `${this._streamUrl()}?resume=${encodeURIComponent(this._resumeToken)}&after=${this._lastSeq}`;
    const deadline = Date.now() + RESUME_WINDOW_MS;
    let delay = RESUME_FIRST_DELAY_MS;
    while (Date.now() + delay < deadline) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(2 * delay, RESUME_MAX_DELAY_MS);
      if (this.state !== "reconnecting") return; // closed meanwhile
      let ws;
      try {
        ws = await this._connect(url);
      } catch {
        continue;
      }
      const first = await firstMessage(ws, deadline - Date.now());
      if (this.state !== "reconnecting") return ws.close();
      if (!first) {
        ws.close();
        continue;
      }
      if (first.type !== "resumed") {
        ws.close();
        return this._giveUp(first.type === "error" ? first : null, `the server answered ${first.type}`);
      }
      const offset = this._audio.offsetOf(first.received_s);
      if (offset < this._audio.keptFrom) {
        ws.close();
        return this._giveUp(null, `the server needs audio from ${first.received_s.toFixed(1)} s on, older than this page keeps`);
      }
      this._attach(ws, offset);
      this._setState("open");
      this.dispatchEvent(new CustomEvent("resumed", { detail: first }));
      return;
    }
    this._giveUp(null, `the connection was lost and did not come back within ${RESUME_WINDOW_MS / 1000} s`);
  }

  /** The stream cannot go on: the server's refusal, or why not, as an "error" event; then closed. */
  _giveUp(refusal, reason) {
    const error = refusal || { type: "error", code: "connection_lost", message: reason };
    this.dispatchEvent(new CustomEvent("error", { detail: error }));
    this.dispatchEvent(new CustomEvent("event", { detail: error }));
    this._teardown();
    this._setState("closed");
  }

  _receive(data) {
    /** @type {ServerEvent} */
    const event = JSON.parse(data);
    if (event.seq <= this._lastSeq) return; // sent again to a resumed connection: seen already
    this._lastSeq = event.seq;
    if (event.type === "ready") {
      this.sessionId = event.session_id;
      this.transcriptId = event.transcript_id;
      this._resumeToken = event.resume_token || null;
      this._attempt = 0;
    }
    this.dispatchEvent(new CustomEvent(event.type, { detail: event }));
    this.dispatchEvent(new CustomEvent("event", { detail: event }));
    if (event.type === "closed") {
      this._teardown();
      this._setState("closed");
    }
  }

  _dropped() {
    this._teardown();
    if (this._stopping || !this.reconnect || this._attempt >= RECONNECT_DELAYS_MS.length) {
      this._setState("closed");
      return;
    }
    const delay = RECONNECT_DELAYS_MS[this._attempt++];
    this._setState("reconnecting");
    setTimeout(() => this._open().catch(() => this._dropped()), delay);
  }

  _send(message) {
    const text = JSON.stringify(message);
    if (this._channel && this._channel.readyState === "open") this._channel.send(text);
    else if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(text);
  }

  _stopAudio() {
    if (this._context) this._context.close();
    this._context = null;
  }

  _teardown() {
    this._stopAudio();
    if (this._pc) this._pc.close();
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) this._ws.close();
    this._pc = this._channel = this._ws = this._audio = null;
    this._resumeToken = null;
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

/** The audio of a WebSocket stream (16-bit PCM frames) and the `finalize` messages between it, by
 * byte offset, with the offset each connection has sent up to: the last `keepSeconds` stay, sent or
 * not, so a resumed connection can have them again (as the Python SDK's Outgoing). */
class SentAudio {
  constructor(bytesPerSecond, keepSeconds) {
    this.bytesPerSecond = bytesPerSecond;
    this._keepBytes = bytesPerSecond * keepSeconds;
    /** @type {{offset: number, data: ArrayBuffer}[]} */ this._frames = [];
    /** @type {{offset: number, message: object}[]} */ this._marks = [];
    this._nextMark = 0; // the first mark this connection has not had
    this.keptFrom = 0;
    this._end = 0;
    this._sent = 0;
    this.stop = null;
    this._stopSent = false;
  }

  take(data) {
    this._frames.push({ offset: this._end, data });
    this._end += data.byteLength;
    while (this._frames.length && this._frames[0].offset + this._frames[0].data.byteLength <= this._end - this._keepBytes) {
      this._frames.shift();
    }
    this.keptFrom = this._frames.length ? this._frames[0].offset : this._end;
    while (this._nextMark && this._marks[0].offset < this.keptFrom) {
      this._marks.shift(); // sent, and no resume can start before it any more
      this._nextMark--;
    }
  }

  /** `message` after the audio taken so far (ignored once `stop` was asked for). */
  mark(message) {
    if (!this.stop) this._marks.push({ offset: this._end, message });
  }

  /** The byte offset of `seconds` of audio (whole samples, never past what was taken). */
  offsetOf(seconds) {
    return Math.min(Math.round((seconds * this.bytesPerSecond) / 2) * 2, this._end);
  }

  /** A new connection: send from `offset` on, each mark from `offset` on again (one at exactly
   * `offset` may have been lost with the old connection: a repeated `finalize` is harmless), and
   * `stop` again if it was asked for. */
  restartAt(offset) {
    this._sent = offset;
    this._nextMark = this._marks.findIndex((mark) => mark.offset >= offset);
    if (this._nextMark < 0) this._nextMark = this._marks.length;
    this._stopSent = false;
  }

  /** What the connection has not had, in order: the frames (or their tails) from the sent offset
   * on, each mark once the audio before it is out, and `stop` (once per connection) after every
   * frame once it was asked for. All of it counts as sent. */
  unsent() {
    const items = [];
    const marksDue = () => {
      while (this._nextMark < this._marks.length && this._marks[this._nextMark].offset <= this._sent) {
        items.push(this._marks[this._nextMark++].message);
      }
    };
    marksDue();
    for (const frame of this._frames) {
      const end = frame.offset + frame.data.byteLength;
      if (end <= this._sent) continue;
      items.push(this._sent <= frame.offset ? frame.data : frame.data.slice(this._sent - frame.offset));
      this._sent = end;
      marksDue();
    }
    if (this.stop && !this._stopSent && this._sent >= this._end) {
      this._stopSent = true;
      items.push(this.stop);
    }
    return items;
  }
}

/** The first message of `ws` (parsed), or null if it closes or `timeoutMs` passes first. */
function firstMessage(ws, timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), Math.max(0, timeoutMs));
    ws.onmessage = (message) => {
      clearTimeout(timer);
      resolve(JSON.parse(message.data));
    };
    ws.onclose = () => {
      clearTimeout(timer);
      resolve(null);
    };
  });
}

export class StreamscribeError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Upload a file for transcription; returns the server's answer (session and transcript ids).
 * Follow it with `followSession`. Options other than baseUrl and token are form fields. */
export async function uploadFile(file, { baseUrl = location.origin, token, ...options } = {}) {
  const form = new FormData();
  for (const [name, value] of Object.entries(options)) if (value != null) form.append(name, String(value));
  form.append("file", file, file.name);
  const headers = await authHeaders(token);
  const response = await fetch(`${baseUrl}/v1/transcriptions`, { method: "POST", body: form, headers });
  const answer = await response.json();
  if (!response.ok) throw new StreamscribeError(answer.error.code, answer.error.message);
  return answer;
}

/** Follow a session's events over Server-Sent Events (EventSource resumes by itself after a
 * dropped connection; one refused because its token expired is reopened with a fresh token where
 * `token` is a function); `onEvent` gets each event. Returns a function that stops following. */
export function followSession(sessionId, onEvent, { baseUrl = location.origin, token } = {}) {
  const types = ["ready", "speech_started", "partial", "final", "utterance_end", "error", "progress",
    "finalizing", "transcript_ready", "closed"];
  let source = null;
  let lastSeq = 0;
  let reopened = 0; // in a row, without an event between: a refusal that is not the token's ends it
  let stopped = false;
  const open = async () => {
    const url = await withToken(`${baseUrl}/v1/sessions/${sessionId}/events?after=${lastSeq}`, token);
    if (stopped) return;
    source = new EventSource(url);
    for (const type of types) {
      source.addEventListener(type, (message) => {
        if (!message.data) return; // EventSource's own "error" (a dropped connection it will retry)
        const event = JSON.parse(message.data);
        lastSeq = event.seq;
        reopened = 0;
        onEvent(event);
        if (event.type === "closed") stop();
      });
    }
    source.onerror = () => {
      const closed = source.readyState === EventSource.CLOSED;
      if (closed && typeof token === "function" && !stopped && reopened++ < 3) open();
    };
  };
  const stop = () => {
    stopped = true;
    if (source) source.close();
  };
  open();
  return stop;
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 2000); // host candidates are enough on a LAN or loopback
  });
}
