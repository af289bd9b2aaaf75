"""Support for the egress probe tests: TLS servers, a private PKI, proxies, namespaces."""
