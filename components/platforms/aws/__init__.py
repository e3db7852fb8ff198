"""The AWS platform (stack aws): VPC, security groups, load balancers, IAM, the servers and the client group."""
