"""Request and token limits per key, user, model and globally: rules, the in-memory and Redis backends, the stage."""
