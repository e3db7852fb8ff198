# Application developers, through `nomadctl` (scripts/nomadctl.py): see their jobs in "apps", their
# allocations' stats (read-job: client/alloc_endpoint.go Stats@v2.0.5), read their logs and files, and
# enter their containers (alloc-exec; never alloc-node-exec, which reaches tasks without a sandbox).
# They cannot submit: jobs reach the cluster through the pipeline, the program and its review.
namespace "apps" {
  capabilities = [
    "list-jobs",
    "read-job",
    "read-logs",
    "read-fs",
    "alloc-exec",
  ]
}
