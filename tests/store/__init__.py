"""Store tests. A package, so that module names such as `test_events` do not collide with
tests/server/'s under pytest's default `prepend` import mode."""
