# CPU image of the streamscribe server on the embedded default model (Whisper tiny.en).
#   docker build -t streamscribe .
#   docker run --rm -v streamscribe-data:/var/lib/streamscribe streamscribe streamscribe keys create me
#   docker run --rm -p 8000:8000 -p 50000-50100:50000-50100/udp -v streamscribe-data:/var/lib/streamscribe \
#       -e STREAMSCRIBE_WEBRTC_PUBLIC_ADDRESS=<the host's address> streamscribe
# It serves on 0.0.0.0, so it starts only once a key exists in its data volume (the first command
# prints it) or with STREAMSCRIBE_AUTH=off. WebRTC media uses the UDP ports 50000-50100, which must
# be published as the same range; browsers reach them at STREAMSCRIBE_WEBRTC_PUBLIC_ADDRESS.
# Many nodes and `streamscribe worker`s on Redis, PostgreSQL and MinIO: compose.yaml (README:
# Scaling out).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    STREAMSCRIBE_MODEL_CACHE_DIR=/var/cache/streamscribe \
    STREAMSCRIBE_DATA_DIR=/var/lib/streamscribe \
    NUMBA_CACHE_DIR=/tmp/numba \
    STREAMSCRIBE_CLIENT_DIR=/app/client_js \
    STREAMSCRIBE_WEBRTC_PORTS=50000-50100

WORKDIR /app
# silero-vad requires torch (only its ONNX model is used). PyPI's Linux torch is a CUDA build of
# several GB, so the CPU build comes from PyTorch's CPU index first (`pip install .` then finds the
# pin satisfied). --build-arg TORCH_INDEX_URL=https://pypi.org/simple takes PyPI's build instead.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY pyproject.toml README.md ./
COPY server ./server
COPY client_js ./client_js
# webrtcvad (a dependency of resemblyzer) is a source package: compile it, then drop the compiler.
# The scale extra brings the Redis, PostgreSQL and S3 drivers (`streamscribe worker`, --redis-url...).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install '.[scale]' \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home streamscribe \
    && mkdir -p /var/cache/streamscribe /var/lib/streamscribe \
    && chown streamscribe /var/cache/streamscribe /var/lib/streamscribe
VOLUME /var/lib/streamscribe

USER streamscribe
EXPOSE 8000 50000-50100/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["streamscribe", "serve", "--host", "0.0.0.0", "--port", "8000"]
