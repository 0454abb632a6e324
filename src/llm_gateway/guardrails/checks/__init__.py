"""The guardrail checks, one module per kind; each is imported only when a guardrail of its kind is configured."""
