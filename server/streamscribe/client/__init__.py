"""Python clients of the server: /v1/stream over websockets, uploads and transcripts over HTTP, WebRTC over aiortc."""
