// AudioWorklet: the microphone as 16-bit PCM frames of 100 ms, posted to the main thread.
// Runs in an AudioContext created at 16 kHz where the browser allows it; otherwise at the
// context's own rate, which the `start` message then names (the server resamples 8-48 kHz).

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frameSamples = Math.round(sampleRate / 10);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const clipped = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      if (this.filled === this.frameSamples) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]); // transferred: detached here
        this.frame = new Int16Array(this.frameSamples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
