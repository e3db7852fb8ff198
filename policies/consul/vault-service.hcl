# Vault's service registration: the `vault` service (with active/standby tags) and its health checks.
service "vault" {
  policy = "write"
}
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
