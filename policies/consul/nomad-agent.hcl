# Nomad servers and clients with workload identity (Nomad >= 1.7): Nomad registers its own agents'
# and the jobs' services and reads the catalog; workloads get their own tokens through the JWT auth
# method, so Nomad's token needs no ACL write.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "write"
}
