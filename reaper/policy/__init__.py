"""The clean-up policies: one declaration each, and which rows each one matches.

- ``spec``: what a policy declares (``PolicySpec``): its name, the status of its rows, its age limit
  (setting key, unit, default, flag), its action or the setting that chooses one, and its heartbeat
  limit and attempts bound if it has them.
- ``running_timeout``, ``pending_timeout``, ``failure_retention``, ``success_retention``: one module
  per policy, its ``SPEC`` and, in its docstring, what it does.
- ``catalog``: the standard policies in the order a run applies them, and what others read of them.
- ``policies``: a policy's rules (one per task type with its own settings) built from a spec and the
  settings in force; ``matching``: the SQL condition of a rule, and the same judgement in Python.

The rest reads the specs: the settings (``settings.policies`` builds the fields from them), the
metrics (the ``policy`` and ``action`` labels, the stale statuses), ``--check-indexes``, the audit
line, and the daemon (which policies a rescue runs, which settings reopen the table).

Adding a policy:

1. Write ``reaper/policy/<name>.py``: a docstring saying which rows it judges and what it does, and
   ``SPEC = PolicySpec(...)``: ``name``, ``status`` (a role of ``settings.table.Statuses``), ``age``
   (its key ends with the unit: ``retry_timeout_hours``), ``action`` (an ``Action``, or an
   ``ActionChoice`` with its setting), and ``heartbeat`` or ``attempts`` if it has them. Its rows
   are dated by the age columns of their status (``database.table.AGE_COLUMNS``).
2. Add it to ``catalog.STANDARD_SPECS``, where it should run (zombies before retentions).
3. Test it in ``tests/test_<name>.py`` on the three databases (rows it takes, rows it leaves), and
   describe its settings in ``docs/configuration.md`` and the policy in ``docs/policies.md``;
   ``tests/test_policies.py`` checks that the settings, the metrics, the indexes and the audit line
   know it.

Its settings (``REAPER_<KEY>``, the TOML key, the ``[task_types.NAME]`` key), metric series, index
advice and audit keys then follow, and so does its command-line flag (``Limit.flag``, in the
"thresholds" group of ``--help``).
"""
