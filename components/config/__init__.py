"""Stage 1, what the operator chose: the validated settings (the only reader of pulumi.Config), the node OS releases and the fixed address plan."""
