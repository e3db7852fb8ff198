# CI: submit, read and scale jobs in the "apps" namespace, and nothing anywhere else. No read-fs,
# alloc-exec or variables: a pipeline deploys, it does not look inside running workloads.
namespace "apps" {
  capabilities = [
    "list-jobs",
    "parse-job",
    "read-job",
    "submit-job",
    "dispatch-job",
    "read-logs",
    "alloc-lifecycle",
    "scale-job",
    "read-job-scaling",
    "list-scaling-policies",
    "read-scaling-policy",
  ]
}
