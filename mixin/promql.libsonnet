// PromQL helpers shared by the alerts and the dashboard.
{
  // `metric` selected by the non-empty `matchers` (strings such as 'status="running"').
  series(metric, matchers)::
    local kept = std.filter(function(m) m != '', matchers);
    if std.length(kept) == 0 then metric else metric + '{' + std.join(',', kept) + '}',

  // The anchor of a runbook section: GitHub's, the heading in lower case.
  anchor(name):: std.asciiLower(name),
}
