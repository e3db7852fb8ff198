# Dashboards and curious humans: see jobs, nodes and cluster state, change nothing. No logs
# (read-logs) or files (read-fs): those can carry a workload's secrets.
namespace "*" {
  policy = "read"
}

node {
  policy = "read"
}

agent {
  policy = "read"
}

operator {
  policy = "read"
}

plugin {
  policy = "read"
}
