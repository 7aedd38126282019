"""Settings: flags, ``REAPER_*`` environment, ``.env`` and TOML, validated once; the presets of known job tables."""
