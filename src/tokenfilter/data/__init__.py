"""The data stage: corpus sources and format, the built-in world (``synthetic``), the tokenizer, token shards, the one span→token alignment, corpus statistics."""
