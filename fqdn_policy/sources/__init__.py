"""Policy sources: where the agent's PolicySets come from (a file, or the Kubernetes API server).

The Kubernetes modules here are the only code in the project that speaks Kubernetes.
"""
