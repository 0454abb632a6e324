"""The `anthropic` provider type: the Messages API."""
