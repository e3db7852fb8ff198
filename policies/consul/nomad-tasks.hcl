# What a Nomad task's workload identity may do in Consul: read services and KV for `template`
# blocks. The rules of `nomad setup consul` (hashicorp/nomad command/asset/consul-wi-default-policy.hcl,
# the Consul CE variant: key_prefix and service_prefix read), plus node_prefix read: Consul drops
# health results for nodes the token cannot read (aclFilter.filterCheckServiceNodes), so a
# `service` lookup would come back empty without it. The anonymous token reads nodes anyway.
key_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
