"""Embedding providers: the built-in local model, any OpenAI-compatible server, a hashing stub."""

from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from polymkt_dagster.lib.search.common import (
    EMBED_BATCH_CHAR_BUDGET,
    EMBED_BATCH_SIZE,
    MAX_EMBED_CHARS,
    Embedder,
    EmbeddingError,
    EmbeddingUsage,
)

# ---- embedding providers -----------------------------------------------------------------


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out = matrix / np.where(norms == 0, 1.0, norms)
    out[norms[:, 0] == 0, 0] = 1.0  # an empty text still gets a valid direction
    return out.astype(np.float32)


_HASH_WORD = re.compile(r"[a-z0-9]+")
_HASH_STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "if", "in",
     "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "will",
     "with")
)  # fmt: skip


def _crude_stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


# The built-in model: WordLlama "l2_supercat" (MIT, github.com/dleemiller/WordLlama), a
# static token-embedding table distilled from the input embeddings of several large
# language models (Llama 2 70B, Mixtral, ...) with the Llama 2 tokenizer (32k tokens),
# 256 dimensions. Its weights (16 MB) and tokenizer ship inside the `wordllama` wheel.
LOCAL_EMBEDDING_MODEL = "wordllama-l2-supercat-256"
_WORDLLAMA_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_WORDLLAMA_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
# Tokens per text: question and event title come first, so a long description only loses
# its tail, which is boilerplate resolution wording.
LOCAL_MAX_TOKENS = 256


class LocalModelError(RuntimeError):
    """The bundled model files are missing (the `wordllama` wheel is not installed)."""


_LOCAL_MODEL: tuple[Any, np.ndarray] | None = None


def _load_local_model() -> tuple[Any, np.ndarray]:
    """The tokenizer and the token-embedding table, read once per process from the wheel.

    The files are read directly rather than through ``WordLlama.load()``: that function looks
    for the tokenizer under ``tokenizer/`` while the wheel ships it under ``tokenizers/``, so
    it goes to the network (Hugging Face) and fails offline; importing ``wordllama`` also
    costs ~0.5 s and configures the root logger. Only ``tokenizers`` and ``safetensors`` are
    needed to compute the same vectors (mean of the token vectors, L2-normalised).
    """
    global _LOCAL_MODEL
    if _LOCAL_MODEL is not None:
        return _LOCAL_MODEL
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            "the built-in embedding model needs the `wordllama` package "
            "(pip install wordllama==0.4.0.post1)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    weights, tokenizer_file = (
        root.joinpath(*_WORDLLAMA_WEIGHTS),
        root.joinpath(*_WORDLLAMA_TOKENIZER),
    )
    for path in (weights, tokenizer_file):
        if not path.exists():
            raise LocalModelError(f"the wordllama wheel has no {path.name} at {path}")
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(LOCAL_MAX_TOKENS)
    table = np.ascontiguousarray(load_file(str(weights))["embedding.weight"], dtype=np.float32)
    _LOCAL_MODEL = (tokenizer, table)
    return _LOCAL_MODEL


class LocalEmbedder(Embedder):
    """The built-in embedder: WordLlama's static token vectors, mean-pooled, on the CPU.

    No network, no key, no download: the model ships in the ``wordllama`` wheel. About 20k
    short texts per second on one core, so every market can be embedded on any machine.
    """

    dim = 256
    # Long texts dilute a mean of token vectors: the local model embeds the question,
    # event title, outcomes and tags, and the description's first sentences only.
    description_chars = 0

    def __init__(self) -> None:
        self.model = LOCAL_EMBEDDING_MODEL
        self.usage = EmbeddingUsage()
        self._model: tuple[Any, np.ndarray] | None = None

    def load(self) -> LocalEmbedder:
        """Read the model now (otherwise on the first ``embed``)."""
        if self._model is None:
            self._model = _load_local_model()
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, table = self.load()._model or _load_local_model()
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        step = 1024
        for start in range(0, len(texts), step):
            batch = [t[:MAX_EMBED_CHARS] for t in texts[start : start + step]]
            encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
            lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
            total = int(lengths.sum())
            if not total:
                continue
            ids = np.fromiter((i for e in encodings for i in e.ids), np.int64, total)
            np.clip(ids, 0, table.shape[0] - 1, out=ids)
            present = np.flatnonzero(lengths)
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[present]
            sums = np.add.reduceat(table[ids], starts, axis=0)
            out[start + present] = sums / lengths[present, None]
        self.usage.requests += 1
        self.usage.inputs += len(texts)
        return _normalise_rows(out)


class HashingEmbedder(Embedder):
    """A deterministic offline embedder: a signed hashed bag of crudely stemmed words.

    Texts sharing words get close vectors, which is all tests and benchmarks need to
    exercise the semantic index without a network; it is no substitute for a real model.
    """

    def __init__(self, dim: int = 256, model: str | None = None) -> None:
        self.dim = dim
        self.model = model or f"local-hashing-{dim}"
        self.usage = EmbeddingUsage()
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, word: str) -> tuple[int, float]:
        slot = self._slots.get(word)
        if slot is None:
            digest = zlib.crc32(word.encode())
            slot = (digest % self.dim, 1.0 if (digest >> 20) & 1 else -1.0)
            self._slots[word] = slot
        return slot

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _HASH_WORD.findall(text.lower()):
                if word in _HASH_STOPWORDS:
                    continue
                index, sign = self._slot(_crude_stem(word))
                matrix[row, index] += sign
        self.usage.requests += 1
        self.usage.inputs += len(texts)
        return _normalise_rows(matrix)


def _redact(message: str, secret: str | None) -> str:
    if secret:
        message = message.replace(secret, "***")
    return re.sub(r"sk-[A-Za-z0-9_\-*]{6,}", "sk-***", message)


class OpenAIEmbedder(Embedder):
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

    Batches by input count and by a character budget, retries 429, 5xx, timeouts and
    connection errors with exponential backoff and full jitter (honouring Retry-After),
    counts requests and tokens. The client's own retries are switched off so the retry
    budget is this class's alone. Error messages never carry the API key.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        batch_size: int = EMBED_BATCH_SIZE,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client.with_options(max_retries=0, timeout=timeout_s)
        self._api_key: str | None = getattr(client, "api_key", None)
        self.model = model
        self.batch_size = max(1, min(batch_size, 2048))
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.usage = EmbeddingUsage()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        chars = 0
        for text in texts:
            text = text[:MAX_EMBED_CHARS] or " "
            if batch and (
                len(batch) >= self.batch_size or chars + len(text) > EMBED_BATCH_CHAR_BUDGET
            ):
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[np.ndarray] = []
        for batch in self._batches(texts):
            rows.append(self._embed_batch(batch))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise_rows(np.vstack(rows))

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        import openai  # imported here so the module loads without the package in a pinch

        attempt = 0
        while True:
            self.usage.requests += 1
            try:
                response = self._client.embeddings.create(
                    model=self.model, input=batch, encoding_format="float"
                )
                break
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                failure: Exception = exc
                retry_after = None
            except openai.APIStatusError as exc:
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise EmbeddingError(
                        f"embedding request rejected with HTTP {exc.status_code}: "
                        f"{_redact(str(exc), self._api_key)}"
                    ) from None
                failure = exc
                retry_after = _retry_after_seconds(exc.response)
            if attempt >= self.max_retries:
                raise EmbeddingError(
                    f"embedding request failed after {attempt + 1} attempts: "
                    f"{_redact(str(failure), self._api_key)}"
                ) from None
            backoff = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
            delay = self._rng.uniform(backoff / 2, backoff)  # jitter spreads retries out
            if retry_after is not None:
                delay = min(self.backoff_max_s, max(delay, retry_after))
            self.usage.retries += 1
            attempt += 1
            self._sleep(delay)
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise EmbeddingError(f"asked for {len(batch)} embeddings, received {len(data)}")
        self.usage.inputs += len(batch)
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.usage.total_tokens += int(getattr(usage, "total_tokens", 0) or 0)
        return np.asarray([item.embedding for item in data], dtype=np.float32)


def _retry_after_seconds(response: Any) -> float | None:
    raw = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def configured_embedder(
    api_key: str | None, base_url: str | None, model: str, **options: Any
) -> Embedder:
    """The OpenAI-compatible provider when a key is set, else the built-in local model."""
    return openai_embedder(api_key, base_url, model, **options) or LocalEmbedder()


def openai_embedder(
    api_key: str | None, base_url: str | None, model: str, **options: Any
) -> OpenAIEmbedder | None:
    """An embedder for the configured provider, or None when no API key is set."""
    if not api_key:
        return None
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url or None)
    return OpenAIEmbedder(client, model, **options)
