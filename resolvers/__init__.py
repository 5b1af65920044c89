"""Thin resolvers: check permission, call domain code (models/), map the result."""
