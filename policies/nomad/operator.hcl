# Day-to-day cluster operation: every namespace (jobs, allocations, variables), nodes (drain,
# eligibility), agents, the operator API (raft, autopilot, scheduler), CSI plugins and host volumes.
# Only the management token manages ACLs.
namespace "*" {
  policy       = "write"
  capabilities = ["alloc-node-exec", "csi-register-plugin"]

  variables {
    path "*" {
      capabilities = ["write", "read", "destroy", "list"]
    }
  }
}

node {
  policy = "write"
}

agent {
  policy = "write"
}

operator {
  policy = "write"
}

plugin {
  policy = "write"
}

host_volume "*" {
  policy = "write"
}
