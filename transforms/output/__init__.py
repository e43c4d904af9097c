"""Split, global shuffle and the sink: shards, formats, the second pass and the atomic finalize."""
