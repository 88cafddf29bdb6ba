"""The erpsync contract suite against the Youzan connector and its sandbox."""

from erpsync_youzan.connector import YouzanConnector

from core.testing.contract import ConnectorContract


class TestYouzanContract(ConnectorContract):
    connector_class = YouzanConnector
    # Youzan calls carry the access token only (no signature): a wrong client secret
    # matters for token refresh and pushes, which their own checks cover
    signed_requests = False
