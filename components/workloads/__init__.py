"""Stage 8, the Nomad jobs: loading and validating the job files, then deploying them."""
