"""The pure core: records, decoding, validation and the ordering and dedupe rules. No I/O."""
