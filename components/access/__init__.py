"""Stage 7, who may do what: the providers built from the bootstrap's Outputs, and the policies, roles and tokens they configure."""
