"""Small shared utilities: result tables and run metadata."""
