"""Several hub processes: agents' and visitors' sockets on any node, dispatch on one."""
