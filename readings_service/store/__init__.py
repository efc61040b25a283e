"""The Cassandra adapter: the only package that imports the driver."""
