"""`keel simulate`: realistic traffic and feedback through the gateway (questions.jsonl ships with it)."""
