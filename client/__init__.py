"""The privaudit client: `AuditClient` for Python code, `privaudit` on the command line."""

from privaudit.client.api import AuditClient, AuditError, AuditOutcome
from privaudit.client.local_cluster import LocalCluster

__all__ = ["AuditClient", "AuditError", "AuditOutcome", "LocalCluster"]
