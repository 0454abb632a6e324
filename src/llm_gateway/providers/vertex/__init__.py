"""The `vertex` provider type: Gemini and Anthropic models on Google Cloud's Vertex AI, with Google credentials."""
