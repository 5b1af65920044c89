"""Tortoise models and the domain logic that needs no GraphQL."""
