// The reaper's alerting rules (alerts/reaper-rules.yml, deploy/kubernetes/prometheusrule.yaml).
// Every table-level series carries `table`, so each alert is per table, and its description names it.
local promql = import 'promql.libsonnet';

{
  local c = $._config,
  local s(metric, matchers=[]) = promql.series(metric, [c.selector] + matchers),
  local anyTarget = if c.selector == '' then 'No reaper target' else 'No target matching {' + c.selector + '}',

  // name -> the rule's expression, its summary (fixed) and description (templated), the labels its
  // series carry (for the dashboard link), and `when`, a line for the dashboard's list of alerts.
  reaperAlertSpecs:: {
    ReaperZombieRunningTasks: {
      local a = c.alerts.ReaperZombieRunningTasks,
      expr: s('reaper_stale_tasks', ['status="running"']) + ' > 0',
      summary: 'Tasks stuck in running past the running timeout are not being rescued',
      description: '{{ printf "%.0f" $value }} task(s) of type {{ $labels.task_type }} in table {{ $labels.table }} '
                   + 'have been running past the running timeout of their type, or its heartbeat limit, for more than '
                   + a['for'] + ' and no rescue has cleared them (instance {{ $labels.instance }}).',
      carries: ['job', 'instance', 'table'],
      when: 'running tasks past their timeout or heartbeat limit, not rescued for ' + a['for'],
    },
    ReaperZombiePendingTasks: {
      local a = c.alerts.ReaperZombiePendingTasks,
      expr: s('reaper_stale_tasks', ['status="pending"']) + ' > 0',
      summary: 'Tasks stuck in pending past the pending timeout are not being rescued',
      description: '{{ printf "%.0f" $value }} task(s) of type {{ $labels.task_type }} in table {{ $labels.table }} '
                   + 'have been pending past the pending timeout of their type for more than ' + a['for']
                   + ' and no rescue has cleared them (instance {{ $labels.instance }}).',
      carries: ['job', 'instance', 'table'],
      when: 'pending tasks past their timeout, not rescued for ' + a['for'],
    },
    // Pages: many tasks of one type wait, for long, and nothing fails them either, so callers wait too.
    ReaperZombiePendingTasksPersisting: {
      local a = c.alerts.ReaperZombiePendingTasksPersisting,
      expr: s('reaper_stale_tasks', ['status="pending"']) + ' >= ' + a.count,
      summary: 'Many tasks have been stuck in pending for long, and nothing processes or fails them',
      description: '{{ printf "%.0f" $value }} task(s) of type {{ $labels.task_type }} in table {{ $labels.table }} '
                   + 'are pending past the pending timeout of their type, at least ' + a.count + ' all along the last '
                   + a['for'] + ': no worker takes this work and no rescue fails it (instance {{ $labels.instance }}).',
      carries: ['job', 'instance', 'table'],
      when: 'at least ' + a.count + ' pending zombies of one task type for ' + a['for'],
    },
    ReaperDatabaseDown: {
      local a = c.alerts.ReaperDatabaseDown,
      expr: s('reaper_database_up') + ' == 0',
      summary: 'The reaper cannot query the task database',
      description: 'The statistics polls of table {{ $labels.table }} by {{ $labels.instance }} have been failing for '
                   + 'more than ' + a['for'] + ': the task metrics show the last numbers it saw, and rescues and '
                   + 'cleanups fail until the database answers.',
      carries: ['job', 'instance', 'table'],
      when: 'the database polls fail for ' + a['for'],
    },
    ReaperDown: {
      local a = c.alerts.ReaperDown,
      expr: s('up') + ' == 0',
      summary: 'Prometheus cannot scrape the reaper',
      description: 'The reaper target {{ $labels.instance }} has not answered a scrape for more than ' + a['for']
                   + ': zombies and failed cleanups go unseen.',
      carries: ['job', 'instance'],
      when: 'Prometheus cannot scrape the reaper for ' + a['for'],
    },
    ReaperAbsent: {
      local a = c.alerts.ReaperAbsent,
      expr: 'absent(' + s('up') + ')',
      summary: 'Prometheus has no reaper target',
      description: anyTarget + ' has been discovered for more than ' + a['for']
                   + ': zombies and failed cleanups go unseen.',
      carries: [],
      when: 'Prometheus has no reaper target for ' + a['for'],
    },
    // The time since the later of the last successful cleanup and the process start: how long this
    // process has gone without a successful cleanup. reaper_last_success_timestamp_seconds is 0 until
    // the process's first success, so a daemon that has just started never fires. A reaper whose
    // cleanup found the table's lock taken in that time is left out: another reaper (a second replica,
    // an operator's run) was cleaning, and answers for itself. process_start_time_seconds has no table
    // label: the start time joins each table of its target through `on (job, instance)`.
    ReaperCleanupStale: {
      local a = c.alerts.ReaperCleanupStale,
      local success = s('reaper_last_success_timestamp_seconds'),
      local start = s('process_start_time_seconds'),
      expr: |||
        time() - (
            %(success)s > on (job, instance) group_left () %(start)s
          or on (job, instance, table)
            0 * %(success)s + on (job, instance) group_left () %(start)s
        ) > %(hours)d * 3600
        unless on (job, instance, table)
          increase(%(locked)s[%(hours)dh]) > 0
      ||| % {
        success: success,
        start: start,
        hours: a.hours,
        locked: s('reaper_runs_total', ['mode="cleanup"', 'outcome="locked"']),
      },
      summary: 'No cleanup has succeeded for more than a day',
      description: 'The reaper on {{ $labels.instance }} has not completed a successful cleanup of table '
                   + '{{ $labels.table }} for {{ $value | humanizeDuration }} (counted from its start if it never has).',
      carries: ['job', 'instance', 'table'],
      when: 'no cleanup succeeded for ' + a.hours + ' h (counted from the start)',
    },
    // A failure, and no success since within the window: quiet again once a retry succeeds.
    ReaperCleanupFailing: {
      local a = c.alerts.ReaperCleanupFailing,
      expr: |||
        increase(%(failure)s[%(window)s]) > 0
        unless on (job, instance, table)
          increase(%(success)s[%(window)s]) > 0
      ||| % {
        failure: s('reaper_runs_total', ['mode="cleanup"', 'outcome="failure"']),
        success: s('reaper_runs_total', ['mode="cleanup"', 'outcome="success"']),
        window: a.window,
      },
      summary: 'The nightly cleanup failed and no retry has succeeded',
      description: '{{ printf "%.0f" $value }} cleanup run(s) of table {{ $labels.table }} by {{ $labels.instance }} '
                   + 'failed in the last ' + a.window + ' and none succeeded; the daemon retries a failed cleanup '
                   + 'after 1, 2, 4 ... min for REAPER_CLEANUP_RETRY_HOURS.',
      carries: ['job', 'instance', 'table'],
      when: 'a cleanup failed and none succeeded in ' + a.window,
    },
    // Also when they were never counted (0): the first poll failed, and ReaperDatabaseDown says why.
    ReaperTotalsStale: {
      local a = c.alerts.ReaperTotalsStale,
      expr: 'time() - ' + s('reaper_last_totals_timestamp_seconds') + ' > ' + a.seconds,
      summary: 'The counts of finished tasks are stale',
      description: 'The rows of the terminal statuses of table {{ $labels.table }} were last counted '
                   + '{{ $value | humanizeDuration }} ago by {{ $labels.instance }}: their reaper_tasks series '
                   + '(success, failure, revoked) show old numbers.',
      carries: ['job', 'instance', 'table'],
      when: 'the terminal statuses were last counted over ' + a.seconds + ' s ago',
    },
    ReaperPendingBacklog: {
      local a = c.alerts.ReaperPendingBacklog,
      expr: 'sum without (task_type) (' + s('reaper_tasks', ['status="pending"']) + ') > ' + a.count,
      summary: 'Many tasks are waiting in pending',
      description: '{{ printf "%.0f" $value }} tasks of table {{ $labels.table }} are pending (instance '
                   + '{{ $labels.instance }}), more than ' + a.count + ' for ' + a['for']
                   + ': the workers are not keeping up.',
      carries: ['job', 'instance', 'table'],
      when: 'more than ' + a.count + ' pending tasks for ' + a['for'],
    },
  },

  // The order of the rules file, and of the dashboard's list.
  reaperAlertNames:: [
    'ReaperZombieRunningTasks',
    'ReaperZombiePendingTasks',
    'ReaperZombiePendingTasksPersisting',
    'ReaperDatabaseDown',
    'ReaperDown',
    'ReaperAbsent',
    'ReaperCleanupStale',
    'ReaperCleanupFailing',
    'ReaperTotalsStale',
    'ReaperPendingBacklog',
  ],

  runbookUrl(name):: c.runbookUrlBase + '#' + promql.anchor(name),

  // The dashboard, showing the job, instance and table the alert is about (those its series carry).
  dashboardUrl(labels)::
    local vars = ['var-%s={{ $labels.%s | urlquery }}' % [label, label] for label in labels];
    c.grafanaUrl + '/d/' + c.dashboardUid + (if std.length(vars) == 0 then '' else '?' + std.join('&', vars)),

  // deploy/kubernetes/prometheusrule.yaml: the same groups, for the Prometheus Operator.
  kubernetesPrometheusRule:: {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: c.prometheusRuleName, labels: c.prometheusRuleLabels },
    spec: $.prometheusAlerts,
  },

  prometheusAlerts+:: {
    groups+: [{
      name: c.ruleGroupName,
      rules: [
        local spec = $.reaperAlertSpecs[name];
        local a = c.alerts[name];
        {
          alert: name,
          expr: spec.expr,
          'for': a['for'],
          labels: { severity: a.severity },
          annotations: {
            summary: spec.summary,
            description: spec.description,
            runbook_url: $.runbookUrl(name),
            dashboard_url: $.dashboardUrl(spec.carries),
          },
        }
        for name in $.reaperAlertNames
      ],
    }],
  },
}
