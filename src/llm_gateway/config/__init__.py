"""Reading other gateways' configuration: camelCase names, durations, the Go seed's sections, LiteLLM's files."""
