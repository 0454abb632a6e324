"""The `azure` provider type: Azure OpenAI deployments."""
