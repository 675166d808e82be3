"""Model builders: each family in one file."""
