"""A source package for the registry tests: a collector with a credential setting."""
