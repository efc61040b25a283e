"""Operator tools (generate, load, verify), imported only by the commands that run them."""
