"""Optional: punctuation and casing rewritten by a chat model behind an OpenAI-compatible API.

The model may only change how words are written, never which words: a paragraph whose rewrite
changes the words (after normalisation) keeps its original text, so timings stay true. Any
failure leaves the text as it was and becomes a warning on the version.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from msgspec.structs import replace

from ..text import word_key
from ..transcript import Word

log = logging.getLogger(__name__)

_INSTRUCTION = (
    "You fix the punctuation and capitalisation of a speech transcript. Return the same words in "
    "the same order, only with corrected punctuation and capital letters. Do not add, remove, "
    "reorder or translate words. Reply with the text only."
)


class RewriteClient:
    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s

    def rewrite(self, paragraphs: list[list[Word]]) -> tuple[list[list[Word]], list[str]]:
        """The paragraphs with rewritten spelling where the model kept the words, and warnings."""
        result: list[list[Word]] = []
        rejected = 0
        for words in paragraphs:
            try:
                text = self._complete(" ".join(word.text for word in words))
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                log.warning("rewrite failed: %s: %s", type(exc).__name__, exc)
                return paragraphs, [f"rewrite failed, text kept as it was ({type(exc).__name__})"]
            tokens = text.split()
            if [word_key(token) for token in tokens] != [word_key(word.text) for word in words]:
                rejected += 1
                result.append(words)
                continue
            result.append([replace(word, text=token) for word, token in zip(words, tokens, strict=True)])
        warnings = (
            [f"rewrite changed the words of {rejected} paragraph(s); those were kept"] if rejected else []
        )
        return result, warnings

    def _complete(self, text: str) -> str:
        body = json.dumps(
            {
                "model": self._model,
                "temperature": 0,
                "messages": [{"role": "system", "content": _INSTRUCTION}, {"role": "user", "content": text}],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
            answer = json.loads(response.read())
        content: str = answer["choices"][0]["message"]["content"]
        return content
