"""Small shared utilities: terminal and Markdown tables."""
