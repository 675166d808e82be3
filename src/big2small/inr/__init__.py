"""Implicit neural representations of weight tensors: coordinates, networks, and the fitting module."""
