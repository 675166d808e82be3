"""The compression methods: one module per baseline, one subpackage for Big2Small, and their registry."""
