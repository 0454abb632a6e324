"""The `gemini` provider type: the Gemini API (generateContent, streamGenerateContent, embeddings)."""
