"""Stored Responses API answers: chaining with previous_response_id, retrieval, deletion and retention."""
