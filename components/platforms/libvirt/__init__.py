"""The libvirt platform (stack dev): network, pool and base image, the VMs, the stylesheets applied to the provider's XML."""
