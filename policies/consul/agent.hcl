# Consul agents (the `agent` token every node boots with): register their own node and read the
# catalog for anti-entropy; nothing else.
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
