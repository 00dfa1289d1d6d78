"""The advanced blocks: raw Dockerfile statements, entrypoints, actions,
starter files, file synchronisation and Kubernetes parameters."""
