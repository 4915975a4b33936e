"""Operator tools: replay, dead-letter listing and re-driving, rebuild, status, event.

Every tool command runs through ``runner`` (one error line, documented exit codes) and
takes what the tools share (errors, argument parsing, store and producer) from
``common``; ``kafkareader`` reads offset ranges by assignment, without a group.
"""
