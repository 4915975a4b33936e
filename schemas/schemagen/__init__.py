"""The contract's build steps, run by ``make schemas``: the JSON Schema files
(``jsonschemas``) and the AsyncAPI document (``asyncapi``), generated from the models.

Not part of the installed package: publishers get the files these write, never these.
Run from the repository's root with ``schemas/`` on the path (``make schemas`` does).
"""
