"""The consumer loop and its parts: partition state, positioning, write lanes, after-commit."""
