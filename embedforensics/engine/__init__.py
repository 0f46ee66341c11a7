"""The embedding engine: batching, caching and (later) distributed execution."""
