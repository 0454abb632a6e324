"""The PII leak benchmark: how much of a published PII test set the `pii` guardrail finds and masks, by type.

The test set is built the way Microsoft's presidio-evaluator builds its synthetic data set: its 209 published
sentence templates (`raw_data/templates.txt`, MIT) filled with Faker values (seed 42, three rounds: 627
sentences). A value counts as masked when it no longer appears verbatim in what would go upstream.

Run: PYTHONPATH=src python bench/guardrails/pii_leak.py   (needs the guardrails-data extra and faker)
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from faker import Faker

from llm_gateway.guardrails.base import REVERSIBLE, Parts
from llm_gateway.guardrails.checks import pii
from llm_gateway.guardrails.masking import Vault, apply
from llm_gateway.settings import GuardrailConfig

# placeholder -> (Faker method, the entity type it is counted as, or None: filled but not counted)
FILL: dict[str, tuple[str, str | None]] = {
    "person": ("name", "PERSON"), "name": ("name", "PERSON"), "name_female": ("name_female", "PERSON"),
    "name_male": ("name_male", "PERSON"), "first_name": ("first_name", "PERSON"),
    "last_name": ("last_name", "PERSON"), "first_name_male": ("first_name_male", "PERSON"),
    "first_name_female": ("first_name_female", "PERSON"), "last_name_male": ("last_name_male", "PERSON"),
    "last_name_female": ("last_name_female", "PERSON"), "first_name_nonbinary": ("first_name", "PERSON"),
    "email": ("email", "EMAIL_ADDRESS"), "phone_number": ("phone_number", "PHONE_NUMBER"),
    "credit_card_number": ("credit_card_number", "CREDIT_CARD"), "iban": ("iban", "IBAN_CODE"),
    "ssn": ("ssn", "US_SSN"), "ip_address": ("ipv4_public", "IP_ADDRESS"),
    "us_driver_license": ("bothify", None), "city": ("city", "LOCATION"), "country": ("country", "LOCATION"),
    "address": ("street_address", "LOCATION"), "street_name": ("street_name", "LOCATION"),
    "url": ("url", "URL"), "organization": ("company", None), "building_number": ("building_number", None),
    "secondary_address": ("secondary_address", None), "postcode": ("postcode", None), "zipcode": ("zipcode", None),
    "age": ("random_int", None), "year": ("year", None), "nationality": ("country", None), "job": ("job", None),
    "date_time": ("date", None), "date_of_birth": ("date_of_birth", None), "day_of_week": ("day_of_week", None),
    "state_abbr": ("state_abbr", None), "prefix": ("prefix", None), "prefix_male": ("prefix_male", None),
    "prefix_female": ("prefix_female", None), "nation_woman": ("country", None), "nation_plural": ("country", None),
}
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def templates() -> list[str]:
    spec = importlib.util.find_spec("presidio_evaluator")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install presidio-evaluator --no-deps (the guardrails-data extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data_generator/raw_data/templates.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def sentences(rounds: int = 3) -> list[tuple[str, list[tuple[str, str]]]]:
    fake = Faker("en_US")
    Faker.seed(42)
    out = []
    for _ in range(rounds):
        for template in templates():
            values: list[tuple[str, str]] = []

            def fill(match: re.Match[str], values: list[tuple[str, str]] = values) -> str:
                method, entity = FILL.get(match.group(1), ("word", None))
                value = str(getattr(fake, method)(**({"text": "?#######"} if method == "bothify" else {})))
                if entity is not None:
                    values.append((entity, value))
                return value

            out.append((PLACEHOLDER.sub(fill, template), values))
    return out


def measure(ner: bool, data: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, Any]:
    entities = pii.PATTERN_ENTITIES + ["URL"] + (pii.NER_ENTITIES if ner else [])
    check = pii.build(GuardrailConfig(name="pii", type="pii", action="reversible", entities=entities), Parts())
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    started = time.perf_counter()
    for text, values in data:
        masked = apply(text, [(s, REVERSIBLE) for s in check.spans(text)], Vault())
        for entity, value in values:
            found[entity][1] += 1
            found[entity][0] += value not in masked
    per_text_ms = (time.perf_counter() - started) * 1000 / len(data)
    return {"found": dict(found), "ms": per_text_ms}


def main() -> None:
    data = sentences()
    runs = [("patterns only (default)", measure(False, data))]
    if pii.ner_installed():
        runs.append(("with guardrails-ner", measure(True, data)))
    types = sorted({e for _, r in runs for e in r["found"]})
    print(f"{len(data)} sentences; share of values masked, by type")
    print("| type | values | " + " | ".join(name for name, _ in runs) + " |")
    print("|---|---:|" + "---:|" * len(runs))
    for entity in types:
        total = runs[0][1]["found"][entity][1]
        cells = [f"{r['found'][entity][0] / total:.1%}" for _, r in runs]
        print(f"| {entity} | {total} | " + " | ".join(cells) + " |")
    print("| ms per sentence | | " + " | ".join(f"{r['ms']:.2f}" for _, r in runs) + " |")


if __name__ == "__main__":
    main()
