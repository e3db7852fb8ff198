"""The AWS platform (stack `aws`): a VPC of public subnets, servers on fixed ENIs, clients autoscaled.

Real differences from libvirt, kept visible: servers join by instance tag (cloud auto-join), Vault
unseals itself with the stack's KMS key, nodes fetch their secrets from SSM Parameter Store with an
instance role scoped to their own path (DESIGN decision 10), and the APIs and the ingress sit behind
network load balancers. A server's addresses exist before its certificate (network.py).

The modules, each importing only those before it:
  tags.py             the Name, Project and Stack tags of every resource
  ports.py            the agents' and the ingress's ports
  preflight.py        what the account and region must offer before anything is created
  firewall.py         the security groups and their rules
  load_balancers.py   the API and ingress network load balancers, their target groups and health checks
  network.py          AwsNetwork: VPC, subnets, the servers' ENIs and Elastic IPs, the API load balancer
  parameter_store.py  the nodes' secrets in SSM Parameter Store
  iam.py              each node's instance role, profile and policy
  kms.py              Vault's seal key and the key of the nodes' secrets, with its key policy
  baked_image.py      BakedImage: the baked AMI (nodeImage baked), built by EC2 Image Builder
  nodes.py            AwsNodes: the servers (through the server chain) and the client autoscaling group
"""
