"""Stage 2, the cluster's secrets: the CA, every certificate, gossip keys and preset tokens (ClusterSecrets)."""
