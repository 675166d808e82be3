"""Byte-level encodings shared by the methods: bit packing, sparse masks, outlier index codes, dtype sizes."""
