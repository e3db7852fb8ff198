"""hashistack components: typed settings, the address plan and the cluster's ComponentResources."""
