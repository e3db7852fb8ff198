# Vault policy for Nomad workloads (the "nomad-workloads" JWT role), templated per workload: a task
# reads the secrets under kv/<its namespace>/<its job>, as in Nomad's Vault integration docs
# (docs/secure/vault/acl), on this cluster's "kv" mount. `$accessor` is replaced with the JWT auth
# backend's accessor (auth_jwt_...) by components/access.py; the `{{...}}` parts are Vault's own
# templating, filled in from the entity alias's metadata (the role's claim_mappings) per request.
# Unlike the docs, no `list` on kv/metadata/*: that would show every namespace's job names.

path "kv/data/{{identity.entity.aliases.$accessor.metadata.nomad_namespace}}/{{identity.entity.aliases.$accessor.metadata.nomad_job_id}}/*" {
  capabilities = ["read"]
}

path "kv/data/{{identity.entity.aliases.$accessor.metadata.nomad_namespace}}/{{identity.entity.aliases.$accessor.metadata.nomad_job_id}}" {
  capabilities = ["read"]
}

path "kv/metadata/{{identity.entity.aliases.$accessor.metadata.nomad_namespace}}/*" {
  capabilities = ["list"]
}
