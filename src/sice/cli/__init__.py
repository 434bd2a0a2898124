"""Command-line adapters over the sice core: one module per command."""
