"""Settings: what every source (flags, environment, ``.env``, TOML) may say, validated once, by group.

``model.Settings`` and ``model.load_settings`` are the entry points; a module per group (database,
table, policies, batching, throttling, safety, daemon), ``sources`` for where values come from, and
``presets`` for the defaults of known job tables.
The settings sit below the engine: they import nothing from the engine, daemon, command line,
inspection or safety packages, which all read them.
"""
