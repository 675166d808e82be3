"""What a model is made of: compressible weights, fx channel tracing, module surgery (shared by the methods)."""
