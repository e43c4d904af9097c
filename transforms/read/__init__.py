"""ROOT files to rows: inputs, trees, entry ranges, flattening to jets or events, non-finite values, friends."""
