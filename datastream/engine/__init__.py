"""The engine: buffering, the flush pipeline, bucket closing and derived-stream propagation."""
