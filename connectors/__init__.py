"""Channel connectors. Each folder is one channel; ``base`` is the interface they implement.

Connectors never import the hub's runtime: they receive everything through a
:class:`connectors.base.ConnectorContext`. The only hub module they use is ``hub.envelope``,
the shared data model.
"""
