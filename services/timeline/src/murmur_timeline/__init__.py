"""Murmur timeline service: the source of truth for users, follows and posts."""
