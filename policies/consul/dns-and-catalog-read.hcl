# Attached to Consul's anonymous token: DNS lookups and requests without a token may read the
# catalog (services and nodes) and nothing else. Consul DNS answers with the anonymous token, and
# Nomad's Connect sidecars need it to resolve upstreams across datacenters (seed 003; Consul #7414).
service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
