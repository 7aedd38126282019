// The settings of the reaper mixin. Render with your own values by overriding any of them
// (docs/monitoring.md, "Your own settings"), for example:
//   { selector: 'job="tasks-reaper"', alerts+: { ReaperPendingBacklog+: { count: 5000 } } }
{
  _config+:: {
    // Selects the reaper's series in every rule, panel and dashboard variable; `job`, `instance` and
    // `table` come on top of it. Empty: every series of the right names.
    selector: 'job="reaper"',

    // Where people read docs/runbook.md: each alert's runbook_url is this plus `#` and the alert's
    // name in lower case (the section's anchor), and the dashboard links to it. The default is the
    // runbook's path in this repository: point it at a page your team can open, such as your Git
    // host's view of docs/runbook.md or a wiki copy.
    runbookUrlBase: 'docs/runbook.md',

    // Grafana's address, for the alerts' dashboard_url (the Grafana of docker-compose.yml by default).
    grafanaUrl: 'http://127.0.0.1:3000',

    dashboardUid: 'reaper-overview',
    dashboardTitle: 'reaper: background-job table',
    dashboardTags: ['reaper', 'prometheus'],

    // The rule group, and the PrometheusRule of deploy/kubernetes/ (its labels must match your
    // Prometheus's ruleSelector; kube-prometheus-stack's default is release: <the Helm release>).
    ruleGroupName: 'reaper',
    prometheusRuleName: 'reaper',
    prometheusRuleLabels: { 'app.kubernetes.io/name': 'reaper', release: 'kube-prometheus-stack' },

    // Each alert's severity, how long its condition must hold (`for`), and its threshold if it has
    // one. Only what needs a person now is critical: many pending zombies that nobody fails.
    alerts: {
      ReaperZombieRunningTasks: { severity: 'warning', 'for': '15m' },
      ReaperZombiePendingTasks: { severity: 'warning', 'for': '15m' },
      // Pending zombies of one task type, at least `count` of them all along `for`.
      ReaperZombiePendingTasksPersisting: { severity: 'critical', 'for': '1h', count: 10 },
      ReaperDatabaseDown: { severity: 'warning', 'for': '5m' },
      ReaperDown: { severity: 'warning', 'for': '5m' },
      ReaperAbsent: { severity: 'warning', 'for': '15m' },
      // No successful cleanup for `hours`: the nightly cleanup, its retries, and some slack.
      ReaperCleanupStale: { severity: 'warning', 'for': '10m', hours: 26 },
      // A cleanup failed within `window` and none succeeded in it: longer than the retries last.
      ReaperCleanupFailing: { severity: 'warning', 'for': '10m', window: '8h' },
      // The terminal statuses were last counted more than `seconds` ago (REAPER_TOTALS_INTERVAL_SECONDS: 600).
      ReaperTotalsStale: { severity: 'warning', 'for': '15m', seconds: 3600 },
      // More than `count` pending tasks of one table, all task types together.
      ReaperPendingBacklog: { severity: 'warning', 'for': '15m', count: 1000 },
    },
  },
}
