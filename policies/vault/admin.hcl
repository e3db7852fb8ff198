# Vault "admin": HashiCorp's documented admin policy (Vault tutorial "Policies", admin-policy.hcl)
# adapted to this cluster: policies, auth methods, secrets engines, the "kv" mount, identity and
# leases. The operator token carries it so that nobody needs the root token day to day.
# Deliberately absent, so they stay root-only: sys/raw, sys/generate-root, sys/rekey, sys/rotate,
# sys/seal, sys/step-down, raft peer removal and snapshot restore, and enabling or disabling audit
# devices. Whoever may write policies can widen their own, so this guards against accidents, and
# every such widening lands in the audit log it cannot switch off.

path "sys/health" {
  capabilities = ["read", "sudo"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}

path "sys/policies/acl/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}

path "auth/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}

path "sys/auth" {
  capabilities = ["read"]
}

path "sys/auth/*" {
  capabilities = ["create", "update", "delete", "sudo"]
}

path "sys/mounts" {
  capabilities = ["read"]
}

path "sys/mounts/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}

path "kv/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}

path "identity/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "sys/leases/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}

path "sys/capabilities" {
  capabilities = ["update"]
}

path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Listing audit devices needs sudo; enabling or disabling them is left to root.
path "sys/audit" {
  capabilities = ["read", "sudo"]
}

# Raft: inspect the peers and autopilot, and save snapshots (backups); never restore or remove.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}

path "sys/storage/raft/autopilot/*" {
  capabilities = ["read"]
}

path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
