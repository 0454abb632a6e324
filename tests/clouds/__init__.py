"""Local servers speaking the clouds' documented wire formats: identity endpoints and model endpoints."""
