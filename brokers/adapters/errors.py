from thor.upstream import UpstreamError, UpstreamErrorCode

BrokerErrorCode = UpstreamErrorCode


class BrokerError(UpstreamError):
    """Every broker failure, whatever the broker: adapters raise nothing else."""
