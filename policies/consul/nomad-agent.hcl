# Nomad servers and clients (one token for both) with workload identity (Nomad >= 1.7).
# Compared with Nomad's documented minimum for v1.10 (hashicorp/web-unified-docs content/nomad/v2.0.x/content/docs/secure/acl/consul.mdx,
# "Nomad Agents"; unchanged from v1.10.3's) and with the Consul calls Nomad 1.10.3
# makes with its agent token; tests/test_bootstrap.py keeps this file to the rules below.

# GET /v1/agent/self: Consul version and namespace detection, supported Envoy versions, the client's
# fingerprint (command/agent/consul, client/fingerprint/consul.go).
agent_prefix "" {
  policy = "read"
}

# The documented minimum, for servers and clients alike. Nomad reads the catalog
# (catalog/service/nomad for server discovery) and no call in 1.10.3's source was found that writes a
# node; the write costs nothing here, since every node already holds the `agent` token, which may
# write any node (policies/consul/agent.hcl).
node_prefix "" {
  policy = "write"
}

# Registers the agents' own services (nomad, nomad-client) and their checks, lists the local agent's
# services during sync, and deregisters the workloads' stale services and sidecars, which were
# registered with the workloads' own identity tokens (command/agent/consul/service_client.go sync,
# syncRemoveService).
service_prefix "" {
  policy = "write"
}

# Not granted, on purpose:
# - acl = "write" (documented for servers): it served the legacy Consul token workflow, removed in
#   Nomad 1.10.0 (GH-25217); 1.10.3 creates no Consul token with the agent's token. Workload tokens
#   come from Consul's JWT auth method (the `Login` call carries the task's identity, not this token).
# - mesh = "write" (documented for servers): servers need it only to write ingress and terminating
#   gateway config entries (nomad/consul.go setCE), and no job here declares a gateway. Granting it
#   needs a server-only token first: this token is on every client too.
