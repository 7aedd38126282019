// The reaper's Grafana dashboard (grafana/reaper-dashboard.json).
// Every query selects the config's selector and the job, instance and table variables, and keeps
// job and table apart; replicas of one job on one table are folded with max (gauges) or added up
// (counters: each replica counts its own work).
local promql = import 'promql.libsonnet';

local datasource = { type: 'prometheus', uid: '${datasource}' };
local scope = ['job=~"$job"', 'instance=~"$instance"', 'table=~"$table"'];

local target(ref, expr, legend='', instant=false) =
  { datasource: datasource, refId: ref, expr: expr }
  + (if legend != '' then { legendFormat: legend } else {})
  + (if instant then { range: false, instant: true } else { range: true });

local tableTarget(ref, expr) = { datasource: datasource, refId: ref, expr: expr, format: 'table', range: false, instant: true };

local steps(list) = { mode: 'absolute', steps: [{ color: list[0], value: null }] + [
  { color: step[1], value: step[0] }
  for step in list[1:]
] };

local panel(id, type, title, description, grid, targets, links=[]) = {
  id: id,
  type: type,
  title: title,
  description: description,
  datasource: datasource,
  gridPos: { x: grid[0], y: grid[1], w: grid[2], h: grid[3] },
  targets: targets,
} + (if std.length(links) > 0 then { links: links } else {});

local stat(id, title, description, grid, targets, unit, thresholds, links=[], extra={}) =
  panel(id, 'stat', title, description, grid, targets, links) + {
    fieldConfig: {
      defaults: { unit: unit, thresholds: thresholds, color: { mode: 'thresholds' } } + extra,
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      textMode: 'auto',
      wideLayout: true,
      showPercentChange: false,
    },
  };

local timeseries(id, title, description, grid, targets, unit, bars=false, extra={}) =
  panel(id, 'timeseries', title, description, grid, targets) + {
    fieldConfig: {
      defaults: {
        unit: unit,
        custom: {
          drawStyle: if bars then 'bars' else 'line',
          lineWidth: 1,
          fillOpacity: if bars then 80 else 10,
          showPoints: 'never',
          spanNulls: false,
          stacking: { mode: if bars then 'normal' else 'none', group: 'A' },
        },
        color: { mode: 'palette-classic' },
        min: 0,
      } + extra,
      overrides: [],
    },
    options: {
      legend: { displayMode: 'table', placement: 'right', showLegend: true, calcs: ['lastNotNull', 'max'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  };

local tablePanel(id, title, description, grid, targets, transformations, overrides=[], sortBy='') =
  panel(id, 'table', title, description, grid, targets) + {
    transformations: transformations,
    fieldConfig: {
      defaults: {
        unit: 's',
        decimals: 1,
        custom: { align: 'auto', cellOptions: { type: 'auto' }, inspect: false },
        thresholds: steps(['blue']),
        color: { mode: 'thresholds' },
        noValue: '-',
      },
      overrides: overrides,
    },
    options: {
      showHeader: true,
      cellHeight: 'sm',
      footer: { show: false, reducer: ['sum'], countRows: false, fields: '' },
    } + (if sortBy != '' then { sortBy: [{ displayName: sortBy, desc: false }] } else {}),
  };

local variable(name, label, query) = {
  name: name,
  label: label,
  type: 'query',
  datasource: datasource,
  definition: query,
  query: { qryType: 1, query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
  current: { selected: true, text: ['All'], value: ['$__all'] },
  hide: 0,
  includeAll: true,
  allValue: '.*',
  multi: true,
  options: [],
  refresh: 2,
  regex: '',
  skipUrlSync: false,
  sort: 1,
};

{
  local c = $._config,
  local base = [c.selector],
  // A reaper metric as every panel selects it.
  local q(metric, matchers=[]) = promql.series(metric, base + scope + matchers),
  local runbook(name) = { title: 'Runbook: ' + name, url: $.runbookUrl(name), targetBlank: true },
  local stale = c.alerts.ReaperCleanupStale.hours * 3600,

  // The age of the oldest running and pending task of each type, its limit (the type's own
  // threshold, else the default one), and the one over the other: 1 is the limit.
  local byType = 'job, table, status, task_type',
  local age = 'max by (%s) (%s)' % [byType, q('reaper_task_type_oldest_age_seconds', ['task_type=~"$task_type"'])],
  local ownLimit = 'max by (%s) (label_replace(%s, "status", "$1", "threshold", "(running|pending)_timeout"))' % [
    byType,
    q('reaper_task_type_threshold_seconds', ['threshold=~"running_timeout|pending_timeout"']),
  ],
  local defaultLimit = 'max by (job, table, status) (label_replace(%s, "status", "$1", "policy", "(running|pending)_timeout"))' % [
    q('reaper_threshold_seconds', ['policy=~"running_timeout|pending_timeout"']),
  ],
  local limit = '(%s or on (%s) (0 * %s + on (job, table, status) group_left () %s))' % [
    ownLimit,
    byType,
    age,
    defaultLimit,
  ],
  local share = '%s / on (%s) %s' % [age, byType, limit],

  local alertList = |||
    Each alert, when it fires, and what to do: its section of the runbook.

    | alert | severity | fires when |
    |---|---|---|
  ||| + std.join('', [
    '| [%s](%s) | %s | %s |\n' % [name, $.runbookUrl(name), c.alerts[name].severity, $.reaperAlertSpecs[name].when]
    for name in $.reaperAlertNames
  ]),

  local panels = [
    stat(
      1, 'Database up',
      "reaper_database_up: 1 when the daemon's last statistics poll of the task table worked, 0 when it failed (the other panels then show the last numbers it saw, /readyz answers 503, and rescues and cleanups fail).",
      [0, 0, 3, 4],
      [target('A', 'min by (job, table) (%s)' % q('reaper_database_up'), '{{table}}', instant=true)],
      'short', steps(['red', [1, 'green']]), [runbook('ReaperDatabaseDown')],
      { mappings: [{ type: 'value', options: { '0': { text: 'DOWN', color: 'red', index: 0 }, '1': { text: 'UP', color: 'green', index: 1 } } }], noValue: 'no scrape' },
    ),
    stat(
      2, 'Time since last successful cleanup',
      "time() - reaper_last_success_timestamp_seconds: how long ago the nightly cleanup (not a dry run, not a rescue) last succeeded. The daemon exports 0 until its first success (after a restart too); this panel takes the latest success seen in the last 7 days of Prometheus's history, across replicas, and says 'never' if there is none. Over a day means the last cleanup failed, even after its retries (REAPER_CLEANUP_RETRY_HOURS), or found the lock taken. A daemon in shadow mode (--dry-run) never records a cleanup.",
      [3, 0, 4, 4],
      [target('A', 'time() - max by (job, table) (max_over_time(%s[7d]) > 0)' % q('reaper_last_success_timestamp_seconds'), '{{table}}', instant=true)],
      's', steps(['green', [stale, 'orange'], [stale + 86400, 'red']]),
      [runbook('ReaperCleanupStale'), runbook('ReaperCleanupFailing')], { noValue: 'never', decimals: 1 },
    ),
    stat(
      3, 'Zombie tasks now',
      'reaper_stale_tasks: running and pending rows older than the running_timeout and pending_timeout thresholds of their task type (or the heartbeat limit), which the next rescue (every REAPER_RESCUE_INTERVAL_SECONDS) sets to failure or requeues. Above 0 for long: rescues are off, failing, or in shadow mode.',
      [7, 0, 5, 4],
      [
        target('A', 'sum by (job, table, status) (max by (job, table, status, task_type) (%s))' % q('reaper_stale_tasks', ['status="running"', 'task_type=~"$task_type"']), '{{table}} running', instant=true),
        target('B', 'sum by (job, table, status) (max by (job, table, status, task_type) (%s))' % q('reaper_stale_tasks', ['status="pending"', 'task_type=~"$task_type"']), '{{table}} pending', instant=true),
      ],
      'short', steps(['green', [1, 'orange']]),
      [runbook('ReaperZombieRunningTasks'), runbook('ReaperZombiePendingTasks'), runbook('ReaperZombiePendingTasksPersisting')],
    ),
    stat(
      4, 'Oldest task against its limit',
      "The oldest running and the oldest pending task of the worst task type, as a share of that type's limit (its own running_timeout or pending_timeout, else the default): red at 100 %, when it is a zombie. Each type is in 'Oldest task of each type against its limit'.",
      [12, 0, 4, 4],
      [target('A', 'max by (job, table, status) (%s)' % share, '{{table}} {{status}}', instant=true)],
      'percentunit', steps(['green', [0.8, 'orange'], [1, 'red']]),
      [runbook('ReaperZombieRunningTasks'), runbook('ReaperZombiePendingTasks')], { decimals: 0, noValue: 'none' },
    ),
    stat(
      5, 'Terminal statuses counted',
      'time() - reaper_last_totals_timestamp_seconds: how long ago the rows of the terminal statuses (success, failure, revoked, and any unknown status) were last counted, a full scan every REAPER_TOTALS_INTERVAL_SECONDS; their reaper_tasks series are that old.',
      [16, 0, 3, 4],
      [target('A', 'time() - max by (job, table) (%s)' % q('reaper_last_totals_timestamp_seconds'), '{{table}}', instant=true)],
      's', steps(['green', [c.alerts.ReaperTotalsStale.seconds, 'red']]), [runbook('ReaperTotalsStale')], { decimals: 0 },
    ),
    stat(
      6, 'Rows reaped, last 24 h',
      'increase(reaper_reaped_tasks_total[1d]) by action: rows the rescues and cleanups of the last 24 hours set to failure (failed), set back to pending (requeued: running_timeout_action or pending_timeout_action = requeue) or deleted (failure_retention, success_retention).',
      [19, 0, 5, 4],
      [
        target(p[0], 'sum by (job, table) (increase(%s[1d]))' % q('reaper_reaped_tasks_total', ['action="%s"' % p[1]]), '{{table}} ' + p[1], instant=true)
        for p in [['A', 'failed'], ['B', 'requeued'], ['C', 'deleted']]
      ],
      'short', steps(['blue']), [], { decimals: 0 },
    ) + { options+: { colorMode: 'value', textMode: 'value_and_name' } },
    timeseries(
      7, 'Tasks by status',
      'reaper_tasks summed by status: rows in the task table per status (for the task types selected above; max over replicas, so two daemons on one table are not counted twice). Success and failure rows grow until the retention policies delete them; they are counted every REAPER_TOTALS_INTERVAL_SECONDS.',
      [0, 4, 12, 9],
      [target('A', 'sum by (job, table, status) (max by (job, table, status, task_type) (%s))' % q('reaper_tasks', ['task_type=~"$task_type"']), '{{table}} {{status}}')],
      'short',
    ) + { links: [runbook('ReaperPendingBacklog')] },
    timeseries(
      8, 'Zombies by task type',
      'reaper_stale_tasks: running rows past the running timeout (or heartbeat limit) and pending rows past the pending timeout of their type. The rescues clear them every REAPER_RESCUE_INTERVAL_SECONDS; a type that keeps coming back points at a worker that dies or a queue nobody consumes.',
      [12, 4, 12, 9],
      [
        target('A', 'max by (job, table, task_type) (%s)' % q('reaper_stale_tasks', ['status="running"', 'task_type=~"$task_type"']), '{{table}} running {{task_type}}'),
        target('B', 'max by (job, table, task_type) (%s)' % q('reaper_stale_tasks', ['status="pending"', 'task_type=~"$task_type"']), '{{table}} pending {{task_type}}'),
      ],
      'short',
    ),
    timeseries(
      9, 'Age of the oldest pending and running task',
      'reaper_oldest_task_age_seconds per status, beside the default threshold for it (reaper_threshold_seconds of pending_timeout and running_timeout). A task type with a threshold of its own is judged by it: see Oldest task of each type against its limit. With REAPER_COLUMNS__HEARTBEAT_AT set, a running task that has beaten is aged from its last heartbeat, against the heartbeat limit.',
      [0, 13, 12, 8],
      [
        target('A', 'max by (job, table, status) (%s)' % q('reaper_oldest_task_age_seconds'), '{{table}} oldest {{status}}'),
        target('B', 'max by (job, table, policy) (%s)' % q('reaper_threshold_seconds', ['policy=~"running_timeout|pending_timeout"']), '{{table}} threshold {{policy}}'),
      ],
      's',
    ),
    tablePanel(
      10, 'Oldest task of each type against its limit',
      "reaper_task_type_oldest_age_seconds: the oldest running and pending task of each task type, its limit (the type's own running_timeout or pending_timeout, else the default) and the share of the limit it has reached: red from 100 %, a zombie the next rescue takes. A running task that has beaten a heartbeat column is aged from its last beat and judged by the heartbeat limit, so it can be a zombie below 100 %; Zombies by task type counts those exactly.",
      [12, 13, 12, 8],
      [tableTarget('A', age), tableTarget('B', '%s and on (%s) %s' % [limit, byType, age]), tableTarget('C', share)],
      [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true, job: true },
            indexByName: { table: 0, status: 1, task_type: 2, 'Value #A': 3, 'Value #B': 4, 'Value #C': 5 },
            renameByName: { task_type: 'task type', 'Value #A': 'oldest', 'Value #B': 'limit', 'Value #C': 'of its limit' },
          },
        },
      ],
      [{
        matcher: { id: 'byName', options: 'of its limit' },
        properties: [
          { id: 'unit', value: 'percentunit' },
          { id: 'decimals', value: 0 },
          { id: 'thresholds', value: steps(['green', [0.8, 'orange'], [1, 'red']]) },
          { id: 'custom.cellOptions', value: { type: 'color-background' } },
        ],
      }],
      'of its limit',
    ) + { options+: { sortBy: [{ displayName: 'of its limit', desc: true }] } },
    timeseries(
      11, 'Rows reaped per policy',
      'increase(reaper_reaped_tasks_total) per policy and action: rows set to failure (failed), set back to pending (requeued) or deleted. The timeouts are applied by the rescues all day (every REAPER_RESCUE_INTERVAL_SECONDS) and by the nightly cleanup; the retention policies by the nightly cleanup alone (REAPER_CLEANUP_AT).',
      [0, 21, 12, 8],
      [target('A', 'sum by (job, table, policy, action) (increase(%s[$__rate_interval]))' % q('reaper_reaped_tasks_total'), '{{table}} {{policy}} ({{action}})')],
      'short', bars=true, extra={ decimals: 0 },
    ),
    timeseries(
      12, 'Dry-run candidates per policy',
      'reaper_dry_run_candidates: rows the last dry run would have changed, per policy (the nightly dry run at REAPER_DRY_RUN_AT; in shadow mode also the cleanup, and the rescues for the two timeouts): what a real run is expected to reap.',
      [12, 21, 12, 8],
      [target('A', 'max by (job, table, policy) (%s)' % q('reaper_dry_run_candidates'), '{{table}} {{policy}}')],
      'short',
    ),
    timeseries(
      13, 'Run outcomes, last 24 h',
      'increase(reaper_runs_total[1d]) by mode (cleanup, dry_run, rescue, rescue_dry_run) and outcome (success, failure, locked: another reaper held the lock, stopped: SIGTERM or max-runtime). Expect one cleanup and one dry run a day, a rescue every REAPER_RESCUE_INTERVAL_SECONDS (288 a day at 300 s), and failures only where the cleanup was retried.',
      [0, 29, 12, 8],
      [target('A', 'sum by (job, table, mode, outcome) (increase(%s[1d]))' % q('reaper_runs_total'), '{{table}} {{mode}} {{outcome}}')],
      'short', extra={ decimals: 0 },
    ) + { links: [runbook('ReaperCleanupFailing')] },
    timeseries(
      14, 'Run duration',
      'reaper_run_duration_seconds: how long the last run of each mode took. A cleanup nearing REAPER_MAX_RUNTIME_SECONDS stops early and leaves the rest for the next day.',
      [12, 29, 12, 8],
      [target('A', 'max by (job, table, mode) (%s)' % q('reaper_run_duration_seconds'), '{{table}} {{mode}}')],
      's',
    ),
    stat(
      15, 'Default thresholds in force',
      'reaper_threshold_seconds: the age limit of each policy for task types without their own, and reaper_heartbeat_timeout_seconds: how long a running task may go without a heartbeat (only when REAPER_COLUMNS__HEARTBEAT_AT is set), as the daemon has them now (settings are reloaded every REAPER_RELOAD_INTERVAL_MINUTES and on SIGHUP). Task types with their own are in Thresholds by task type.',
      [0, 37, 12, 8],
      [
        target('A', 'max by (job, table, policy) (%s)' % q('reaper_threshold_seconds'), '{{table}} {{policy}}', instant=true),
        target('B', 'max by (job, table) (%s)' % q('reaper_heartbeat_timeout_seconds'), '{{table}} heartbeat_timeout', instant=true),
      ],
      's', steps(['blue']), [], { decimals: 1 },
    ) + { options+: { colorMode: 'value', orientation: 'vertical' } },
    tablePanel(
      16, 'Thresholds by task type',
      'reaper_task_type_threshold_seconds: one row per table and task type that has thresholds of its own ([task_types.NAME] in the TOML file; keys it leaves unset show the global value), one column per threshold (a policy, or heartbeat_timeout when REAPER_COLUMNS__HEARTBEAT_AT is set). The row * (default) holds the global values (reaper_threshold_seconds, reaper_heartbeat_timeout_seconds) that every other task type, and rows without one, are judged by.',
      [12, 37, 12, 8],
      [tableTarget('A', std.join('\nor ', [
        'max by (row, threshold) (label_join(%s, "row", " / ", "table", "task_type"))' % q('reaper_task_type_threshold_seconds'),
        'max by (row, threshold) (label_join(label_replace(label_join(%s, "threshold", "", "policy"), "task_type", "* (default)", "", ""), "row", " / ", "table", "task_type"))' % q('reaper_threshold_seconds'),
        'max by (row, threshold) (label_join(label_replace(label_replace(%s, "threshold", "heartbeat_timeout", "", ""), "task_type", "* (default)", "", ""), "row", " / ", "table", "task_type"))' % q('reaper_heartbeat_timeout_seconds'),
      ]))],
      [
        { id: 'groupingToMatrix', options: { columnField: 'threshold', rowField: 'row', valueField: 'Value', emptyValue: 'null' } },
        {
          id: 'organize',
          options: {
            excludeByName: {},
            indexByName: { 'row\\threshold': 0, running_timeout: 1, heartbeat_timeout: 2, pending_timeout: 3, failure_retention: 4, success_retention: 5 },
            renameByName: { 'row\\threshold': 'table / task type' },
          },
        },
      ],
      sortBy='table / task type',
    ),
    panel(
      17, 'text', 'Alerts and their runbook',
      'The alerts of the rules shipped with this dashboard, with the link to what to do for each.',
      [0, 45, 24, 10], [],
    ) + {
      targets: [],
      options: { mode: 'markdown', content: alertList, code: { language: 'markdown', showLineNumbers: false, showMiniMap: false } },
    },
  ],

  grafanaDashboards+:: {
    'reaper-dashboard.json': {
      uid: c.dashboardUid,
      title: c.dashboardTitle,
      description: "The reaper daemon's view of its background-job tables: tasks by status, zombies and how old they are against their limits, the rescues and nightly cleanups and what they did. Choose the job, instance and table above.",
      tags: c.dashboardTags,
      editable: true,
      graphTooltip: 1,
      schemaVersion: 39,
      version: 1,
      time: { from: 'now-7d', to: 'now' },
      timepicker: {},
      timezone: '',
      refresh: '1m',
      fiscalYearStartMonth: 0,
      liveNow: false,
      weekStart: '',
      links: [{ title: 'Runbook', type: 'link', url: c.runbookUrlBase, icon: 'doc', targetBlank: true, tooltip: 'What to do when a reaper alert fires' }],
      annotations: {
        list: [
          {
            builtIn: 1,
            datasource: { type: 'grafana', uid: '-- Grafana --' },
            enable: true,
            hide: true,
            iconColor: 'rgba(0, 211, 255, 1)',
            name: 'Annotations & Alerts',
            type: 'dashboard',
          },
          {
            name: 'Cleanups',
            datasource: datasource,
            enable: true,
            hide: false,
            iconColor: 'purple',
            expr: 'sum by (job, table, outcome) (increase(%s[$__rate_interval])) > 0' % q('reaper_runs_total', ['mode="cleanup"']),
            step: '1m',
            titleFormat: 'cleanup {{outcome}}',
            textFormat: '{{job}} {{table}}',
            tagKeys: 'table,outcome',
            useValueForTime: false,
          },
        ],
      },
      templating: {
        list: [
          {
            name: 'datasource',
            label: 'Data source',
            type: 'datasource',
            query: 'prometheus',
            current: {},
            hide: 0,
            includeAll: false,
            multi: false,
            options: [],
            refresh: 1,
            regex: '',
            skipUrlSync: false,
          },
          variable('job', 'Job', 'label_values(%s, job)' % promql.series('reaper_build_info', base)),
          variable('instance', 'Instance', 'label_values(%s, instance)' % promql.series('reaper_build_info', base + scope[:1])),
          variable('table', 'Table', 'label_values(%s, table)' % promql.series('reaper_build_info', base + scope[:2])),
          variable('task_type', 'Task type', 'label_values(%s, task_type)' % promql.series('reaper_tasks', base + scope)),
        ],
      },
      panels: panels,
    },
  },
}
