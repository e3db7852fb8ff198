"""What the dynamic resources share: the HTTPS client with its poller, the conversations with Consul, Nomad and Vault's APIs, and the handling of inputs a preview does not know yet."""
