"""Bundled YAML configurations (presets and dataset descriptions)."""
