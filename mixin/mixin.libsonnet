// The reaper mixin: its alerts and its dashboard, from the settings in config.libsonnet.
// `python mixin/render.py` writes the files the repository ships; docs/monitoring.md says how to
// render them with settings of your own.
(import 'config.libsonnet') + (import 'alerts.libsonnet') + (import 'dashboard.libsonnet')
