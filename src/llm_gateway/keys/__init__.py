"""Virtual keys, users and teams: records, storage, the in-memory key cache, budgets and the auth stage."""
