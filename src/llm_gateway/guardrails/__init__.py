"""Guardrails: PII, secrets, prompt injection and the user's own checks, before, beside and after the call."""
