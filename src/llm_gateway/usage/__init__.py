"""The usage ledger and its cost: prices, cost computation, the batched ledger writer and usage reports."""
