"""Big2Small: small INRs fitted to the weights of a big model, data-free (the compressor is in compressor.py)."""
