"""Operator tools: replay, dead-letter listing and re-driving, rebuild."""
