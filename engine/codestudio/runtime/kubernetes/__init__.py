"""The Kubernetes runtime: studios as single-replica Deployments on a cluster (docs/kubernetes.md).

- :mod:`.settings` -- the data dir's runtime setting (``codestudio runtime show|set``)
- :mod:`.client` -- client configuration (kubeconfig context or in-cluster), timeouts,
  API errors as clear messages; the official ``kubernetes`` client is imported lazily
- :mod:`.manifests` -- the rendered manifest made ready for a cluster (names, labels,
  image digest, Secret, pull secret), applied with server-side apply
- :mod:`.watching` -- list + watch that resumes from a fresh list on end or 410 Gone
- :mod:`.events` -- pod status and events as progress lines and fail-fast reasons
- :mod:`.runtime` -- :class:`~codestudio.runtime.kubernetes.runtime.KubernetesRuntime`
- ``exec``, ``portforward`` (the transports; see their modules)

Importing this package imports nothing heavy: the CLI stays fast.
"""
