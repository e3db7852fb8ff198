# Tasks of the Nomad namespace "default", where the platform's own jobs run (Traefik, Prometheus,
# Grafana), may also read the agents: Prometheus scrapes the local agent's /v1/agent/metrics and its
# Consul discovery asks /v1/agent/self, both agent:read. The apps namespace does not get this.
agent_prefix "" {
  policy = "read"
}
