"""The embedding engine: token-budget batching (batching), the crash-safe sharded cache
(shards; cache keys in cache), data parallel execution with accelerate (distributed), and
the stage that ties them together (embed)."""
