"""Rendering explanations for the terminal and the browser."""
